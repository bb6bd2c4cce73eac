// The outbox as a CSV file in the import format (`needs-tracker import`; the columns are
// service/domain/headcounts.py's CELLS): the counts not sent yet, so a phone about to be
// wiped can hand them over on a cable or a USB stick. Each row keeps its client id, so
// importing the file twice stores nothing new. A group this phone registered that the
// server does not know yet is named by its label and site (the import finds it there,
// or registers it); a known one by its id. A correction is written as a count of the
// same moment (the import has no `supersedes`), which the counting rule then takes.

function cell(value) {
  if (value === null || value === undefined) return "";
  const text = String(value);
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

export function columns(limits) {
  return [
    "client_id", "site_id", "group_label", "group_id", "observed_at", "total",
    ...limits.sadd_keys, ...limits.vulnerable_keys, "needs", "note",
  ];
}

export function outboxCsv(items, groups, limits) {
  const header = columns(limits);
  const known = new Set(
    items.filter((i) => i.kind === "group" && (i.state === "sent" || i.state === "already")).map((i) => i.body.id),
  );
  const rows = [header.join(",")];
  const written = [];
  for (const item of items) {
    if (item.kind !== "report" || item.state !== "queued") continue;
    const body = item.body;
    const group = groups.get(body.group_id);
    const local = group && (group.local || group.refused) && !known.has(group.id);
    const row = {
      client_id: item.client_id,
      site_id: local ? group.site_id : "",
      group_label: local ? group.label : "",
      group_id: local ? "" : body.group_id,
      observed_at: body.observed_at,
      total: body.total,
      ...(body.sadd || {}),
      ...(body.vulnerable || {}),
      // sector:severity:note, ';' between (a ';' in a note would split it: written ',').
      needs: (body.needs || [])
        .map((n) => [n.sector, n.severity, ...(n.note ? [n.note.replace(/;/g, ",")] : [])].join(":"))
        .join(";"),
      note: body.note,
    };
    rows.push(header.map((name) => cell(row[name])).join(","));
    written.push({ ...item, by_label: Boolean(local) });
  }
  return { text: `${rows.join("\r\n")}\r\n`, count: written.length, rows: written };
}
