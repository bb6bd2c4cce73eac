// The field app: the views, the forms, and when to sync. Data: store.js; sending:
// sync.js; the rules: rules.js; the CSV hand-over: csv.js.

import * as store from "./store.js";
import { api, exclusive, Offline, refresh, sendQueued, SignedOut, TryLater } from "./sync.js";
import { fill, localInput, Rules } from "./rules.js";
import { outboxCsv } from "./csv.js";

const M = JSON.parse(document.getElementById("field-messages").textContent);
const LIMITS = JSON.parse(document.getElementById("field-limits").textContent);
const LANG = document.documentElement.lang;
const rules = new Rules(LIMITS, M);
const channel = "BroadcastChannel" in self ? new BroadcastChannel("needs-tracker-field") : null;
const $ = (id) => document.getElementById(id);

const state = {
  view: "loading",
  back: "groups",
  group: null, // the group a form or the detail is about
  correcting: null, // the report a count corrects
  fixing: null, // the refused outbox item a count fixes
  syncing: false,
  lastError: null,
  retryIn: 0,
};

// --- formatting --------------------------------------------------------------------

// Numeric dates: some browsers carry no Armenian month names (they show "M12").
const moments = new Intl.DateTimeFormat(LANG, {
  year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
});
const numbers = new Intl.NumberFormat(LANG);
const when = (iso) => (iso ? moments.format(new Date(iso)) : "");
const people = (n) => fill(M.people, { count: numbers.format(n) });

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (value !== null && value !== undefined && value !== false) node.setAttribute(name, value);
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

function notice(text) {
  const box = $("notice");
  box.textContent = text || "";
  box.hidden = !text;
}

// --- views ---------------------------------------------------------------------------

async function show(view) {
  state.view = view;
  for (const section of document.querySelectorAll("main > section")) {
    section.hidden = section.id !== `view-${view}`;
  }
  $("tabs").hidden = view === "signin" || view === "loading";
  for (const tab of document.querySelectorAll("#tabs button")) {
    if (tab.dataset.view === view) tab.setAttribute("aria-current", "page");
    else tab.removeAttribute("aria-current");
  }
  window.scrollTo(0, 0);
  await render();
  document.body.dataset.view = view; // drawn (the tests wait for it)
}

async function render() {
  const items = await store.outbox();
  const queued = items.filter((i) => i.state === "queued").length;
  $("outbox-badge").textContent = queued ? String(queued) : "";
  renderNet(queued);
  if (state.view === "groups") await renderGroups(items);
  if (state.view === "outbox") await renderOutbox(items);
  if (state.view === "more") await renderMore();
  if (state.view === "detail") await renderDetail(items);
}

function renderNet(queued) {
  const parts = [navigator.onLine ? M.online : M.offline];
  if (state.syncing) parts.push(M.syncing);
  else if (queued) parts.push(fill(M.queued_count, { count: queued }));
  $("net").textContent = parts.join(" · ");
  $("net").dataset.online = navigator.onLine ? "yes" : "no";
}

async function sitesById() {
  return new Map((await store.all("sites")).map((s) => [s.id, s]));
}

const siteName = (sites, id) => (sites.get(id) ? sites.get(id).name : id);
const statusName = (status) => M[`status_${status}`] || status;

// The latest count this phone made for each group (queued or sent), for the cards.
function latestLocal(items) {
  const latest = new Map();
  for (const item of items) {
    if (item.kind !== "report" || item.state === "refused" || item.state === "handed") continue;
    const previous = latest.get(item.group_id);
    if (!previous || item.body.observed_at >= previous.body.observed_at) latest.set(item.group_id, item);
  }
  return latest;
}

async function renderGroups(items) {
  const [groups, sites, asOf, me] = await Promise.all([
    store.all("groups"),
    sitesById(),
    store.setting("groups_as_of"),
    store.setting("me"),
  ]);
  $("groups-asof").textContent = asOf ? fill(M.groups_as_of, { moment: when(asOf) }) : M.never_synced;
  const mine = me && !me.all_sites ? new Set(me.site_ids) : null;
  if (me && me.role === "reader") notice(M.not_coordinator);
  const list = $("group-list");
  list.replaceChildren();
  const shown = groups
    .filter((g) => !mine || mine.has(g.site_id))
    .sort((a, b) => a.site_id.localeCompare(b.site_id) || a.label.localeCompare(b.label));
  if (!shown.length) list.append(el("li", { class: "card empty", text: M.no_groups }));
  const local = latestLocal(items);
  for (const group of shown) {
    const mineLatest = local.get(group.id);
    const lines = [];
    if (group.current_count !== null && group.current_count !== undefined) {
      lines.push(`${people(group.current_count)} · ${fill(M.as_of, { moment: when(group.last_observed_at) })}`);
    } else {
      lines.push(M.no_count);
    }
    if (mineLatest && mineLatest.state === "queued") {
      lines.push(`${M.queued}: ${people(mineLatest.body.total)} · ${when(mineLatest.body.observed_at)}`);
    } else if (
      mineLatest && group.last_observed_at &&
      new Date(group.last_observed_at) > new Date(mineLatest.body.observed_at) &&
      group.current_count !== mineLatest.body.total
    ) {
      lines.push(fill(M.newer_count, { count: numbers.format(group.current_count), moment: when(group.last_observed_at) }));
    }
    const card = el(
      "li",
      { class: `card group status-${group.status}`, "data-group": group.id },
      el("h3", { text: group.label }),
      el("p", { class: "meta", text: `${siteName(sites, group.site_id)} · ${statusName(group.status)}${group.local ? ` · ${M.queued}` : ""}` }),
      ...lines.map((line) => el("p", { class: "count", text: line })),
      el(
        "div",
        { class: "actions" },
        el("button", { type: "button", class: "primary count-group", text: M.kind_report, onclick: () => openCount(group) }),
        el("button", { type: "button", class: "open-group", text: M.kind_change, onclick: () => openDetail(group) }),
      ),
    );
    list.append(card);
  }
}

function describe(item, groups, sites) {
  const group = groups.get(item.group_id || (item.body && item.body.id));
  const label = group ? group.label : item.body.label || M.unknown_group;
  if (item.kind === "report") {
    const kind = item.body.supersedes ? M.kind_correction : M.kind_report;
    return `${kind}: ${label} · ${people(item.body.total)} · ${when(item.body.observed_at)}`;
  }
  if (item.kind === "group") return `${M.kind_group}: ${label} · ${siteName(sites, item.body.site_id)}`;
  if (item.body.site_id) return `${label} · ${fill(M.move_to, { site: siteName(sites, item.body.site_id) })}`;
  return `${label} · ${fill(M.set_status, { status: statusName(item.body.status) })}`;
}

async function renderOutbox(items) {
  const [groupList, sites, lastSync] = await Promise.all([store.all("groups"), sitesById(), store.setting("last_sync")]);
  const groups = new Map(groupList.map((g) => [g.id, g]));
  let line = lastSync ? fill(M.synced_at, { moment: when(lastSync) }) : M.never_synced;
  if (state.lastError) line += ` · ${state.lastError}`;
  $("sync-state").textContent = line;
  const list = $("outbox-list");
  list.replaceChildren();
  if (!items.length) list.append(el("li", { class: "card empty", text: M.empty_outbox }));
  for (const item of [...items].reverse()) {
    const stateName = { queued: M.queued, sent: M.sent, already: M.already, refused: M.refused, handed: M.handed }[item.state];
    const card = el(
      "li",
      { class: `card item state-${item.state}`, "data-client-id": item.client_id, "data-state": item.state },
      el("p", {}, el("span", { class: `chip ${item.state}`, text: stateName }), " ", el("span", { text: describe(item, groups, sites) })),
    );
    const group = groups.get(item.group_id);
    if (item.kind === "report" && (item.state === "sent" || item.state === "already") && group && group.status === "departed") {
      card.append(el("p", { class: "meta departed", text: M.departed_since }));
    }
    if (item.state === "refused" && item.problem) {
      card.append(el("p", { class: "error", text: item.problem.detail }));
      for (const error of item.problem.errors || []) {
        card.append(el("p", { class: "error", text: `${error.field}: ${error.message}` }));
      }
      const actions = el("div", { class: "actions" });
      if (item.kind === "report") {
        actions.append(el("button", { type: "button", class: "primary fix", text: M.fix, onclick: () => openFix(item) }));
      }
      actions.append(el("button", { type: "button", class: "remove", text: M.remove, onclick: () => removeItem(item) }));
      card.append(actions);
    }
    list.append(card);
  }
}

async function renderMore() {
  const [me, sites] = await Promise.all([store.setting("me"), sitesById()]);
  $("who").textContent = me ? `${me.name} · ${me.site_ids.map((id) => siteName(sites, id)).join(", ")}` : "";
  const persisted = navigator.storage && navigator.storage.persisted ? await navigator.storage.persisted() : false;
  $("storage").textContent = persisted ? M.persisted : M.not_persisted;
  for (const button of document.querySelectorAll("button.lang")) {
    button.setAttribute("aria-pressed", button.dataset.lang === LANG ? "true" : "false");
  }
}

async function renderDetail(items) {
  const group = (await store.get("groups", state.group.id)) || state.group;
  state.group = group;
  const [sites, me, reports] = await Promise.all([sitesById(), store.setting("me"), store.all("reports")]);
  $("detail-title").textContent = group.label;
  $("detail-state").textContent = `${siteName(sites, group.site_id)} · ${statusName(group.status)}`;
  const statuses = $("detail-statuses");
  statuses.replaceChildren();
  for (const status of ["waiting", "in_transit", "departed"]) {
    statuses.append(el("button", {
      type: "button",
      class: "status",
      "data-status": status,
      "aria-pressed": group.status === status ? "true" : "false",
      text: statusName(status),
      onclick: () => queueChange(group, { status }),
    }));
  }
  const move = $("detail-move");
  move.replaceChildren();
  for (const id of (me && me.site_ids) || []) {
    if (id !== group.site_id) move.append(el("option", { value: id, text: siteName(sites, id) }));
  }
  for (const part of document.querySelectorAll(".move-part")) part.hidden = !move.options.length;
  const known = new Map();
  for (const report of reports) if (report.group_id === group.id) known.set(report.id, report);
  for (const item of items) {
    if (item.kind === "report" && item.report && item.group_id === group.id) known.set(item.report.id, item.report);
  }
  const list = $("detail-reports");
  list.replaceChildren();
  const recent = [...known.values()].sort((a, b) => b.observed_at.localeCompare(a.observed_at) || b.id - a.id).slice(0, 5);
  if (!recent.length) list.append(el("li", { class: "card empty", text: M.no_recent }));
  for (const report of recent) {
    list.append(el(
      "li",
      { class: "card", "data-report": report.id },
      el("p", { text: `${people(report.total)} · ${when(report.observed_at)}` }),
      el("button", { type: "button", class: "correct", text: M.correct, onclick: () => openCount(group, { correcting: report }) }),
    ));
  }
}

// --- the count form ------------------------------------------------------------------

function clearErrors(form) {
  for (const node of form.querySelectorAll(".error")) {
    node.textContent = "";
    node.hidden = true;
  }
  for (const input of form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
}

function showErrors(errors, summary) {
  for (const [field, message] of Object.entries(errors)) {
    let box = document.getElementById(`err-${field}`);
    const need = field.match(/^needs\.(\d+)\./);
    if (need) box = $("needs-list").children[Number(need[1])]?.querySelector(".error");
    if (!box) box = $("count-summary");
    box.textContent = message;
    box.hidden = false;
    const input = box.previousElementSibling;
    if (input && input.matches("input, select, textarea")) input.setAttribute("aria-invalid", "true");
    const details = box.closest("details");
    if (details) details.open = true;
  }
  if (summary) {
    $("count-summary").textContent = summary;
    $("count-summary").hidden = false;
  }
}

function addNeed(need = {}) {
  const row = $("need-row").content.firstElementChild.cloneNode(true);
  if (need.sector) row.querySelector("[name=need_sector]").value = need.sector;
  if (need.severity) row.querySelector("[name=need_severity]").value = String(need.severity);
  if (need.note) row.querySelector("[name=need_note]").value = need.note;
  row.querySelector(".remove-need").addEventListener("click", () => row.remove());
  $("needs-list").append(row);
}

function readCountForm() {
  const form = $("count-form");
  const value = (name) => form.elements[name]?.value ?? "";
  return {
    total: value("total"),
    observed_at: value("observed_at"),
    sadd: Object.fromEntries(LIMITS.sadd_keys.map((k) => [k, value(`sadd.${k}`)])),
    vulnerable: Object.fromEntries(LIMITS.vulnerable_keys.map((k) => [k, value(`vulnerable.${k}`)])),
    needs: [...$("needs-list").children].map((row) => ({
      sector: row.querySelector("[name=need_sector]").value,
      severity: row.querySelector("[name=need_severity]").value,
      note: row.querySelector("[name=need_note]").value,
    })),
    note: value("note"),
  };
}

function updateSum() {
  const form = readCountForm();
  const given = LIMITS.sadd_keys.filter((k) => form.sadd[k].trim());
  if (!given.length) {
    $("sadd-sum").textContent = "";
    return;
  }
  const added = given.reduce((sum, k) => sum + (Number(form.sadd[k]) || 0), 0);
  const total = Number(form.total) || 0;
  $("sadd-sum").textContent = fill(M.sum_line, { added: numbers.format(added), total: numbers.format(total) }) +
    (added === total && form.total.trim() ? ` ✓ ${M.sum_matches}` : "");
}

async function openCount(group, { correcting = null, fixing = null } = {}) {
  state.group = group;
  state.correcting = correcting;
  state.fixing = fixing;
  state.back = state.view === "detail" || state.view === "outbox" ? state.view : "groups";
  const form = $("count-form");
  form.reset();
  clearErrors(form);
  $("needs-list").replaceChildren();
  const sites = await sitesById();
  $("count-group").textContent = `${group.label} · ${siteName(sites, group.site_id)}`;
  const from = (fixing && fixing.body) || correcting;
  form.elements.observed_at.value = localInput(from ? new Date(from.observed_at) : new Date());
  if (from) {
    form.elements.total.value = String(from.total);
    for (const [key, value] of Object.entries(from.sadd || {})) form.elements[`sadd.${key}`].value = String(value);
    for (const [key, value] of Object.entries(from.vulnerable || {})) form.elements[`vulnerable.${key}`].value = String(value);
    for (const need of from.needs || []) addNeed(need);
    form.elements.note.value = from.note || "";
  }
  $("count-correcting").hidden = !correcting;
  if (correcting) {
    $("count-correcting").textContent = fill(M.correcting, { moment: when(correcting.observed_at), count: numbers.format(correcting.total) });
  }
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  $("zone").textContent = fill(M.zone, { zone: `${zone} (UTC${localOffset()})` });
  updateSum();
  await show("count");
  form.elements.total.focus();
}

function localOffset() {
  const offset = -new Date().getTimezoneOffset();
  const sign = offset >= 0 ? "+" : "−";
  return `${sign}${String(Math.trunc(Math.abs(offset) / 60)).padStart(2, "0")}:${String(Math.abs(offset) % 60).padStart(2, "0")}`;
}

async function saveCount(event) {
  event.preventDefault();
  const form = $("count-form");
  clearErrors(form);
  const { body, errors, summary } = rules.report(readCountForm());
  if (errors) {
    showErrors(errors, summary);
    return;
  }
  body.group_id = state.group.id;
  // A correction (or a fix) left at the moment it was made keeps that moment exactly:
  // the box shows whole seconds, and a correction must not land before what it corrects.
  const from = state.correcting || (state.fixing && state.fixing.body);
  // (Compared as moments: the box drops ":00" seconds from its value.)
  const shown = (iso) => Math.floor(new Date(iso).getTime() / 1000) * 1000;
  if (from && new Date($("f-observed").value).getTime() === shown(from.observed_at)) {
    body.observed_at = from.observed_at;
  }
  const supersedes = state.correcting ? state.correcting.id : state.fixing && state.fixing.body.supersedes;
  if (supersedes) body.supersedes = supersedes;
  await store.enqueue("report", body, { group_id: state.group.id });
  if (state.fixing) await store.remove(state.fixing.n); // the refused one gives way to its fix
  state.fixing = null;
  state.correcting = null;
  notice(M.count_saved);
  await show(state.back === "outbox" ? "outbox" : "groups");
  kick();
}

function openFix(item) {
  store.get("groups", item.group_id).then((group) =>
    openCount(group || { id: item.group_id, label: M.unknown_group, site_id: "" }, { fixing: item }));
}

async function removeItem(item) {
  if (!confirm(M.confirm_remove)) return;
  await store.remove(item.n);
  await render();
}

// --- groups: register, change, move --------------------------------------------------

async function openGroupForm() {
  const [me, sites] = await Promise.all([store.setting("me"), sitesById()]);
  const form = $("group-form");
  form.reset();
  clearErrors(form);
  const select = $("g-site");
  select.replaceChildren(...((me && me.site_ids) || []).map((id) => el("option", { value: id, text: siteName(sites, id) })));
  state.back = "groups";
  await show("group");
  $("g-label").focus();
}

async function saveGroup(event) {
  event.preventDefault();
  const form = $("group-form");
  clearErrors(form);
  const { body, errors } = rules.group({
    site_id: form.elements.site_id.value,
    label: form.elements.label.value,
    origin: form.elements.origin.value,
  });
  if (errors) {
    for (const [field, message] of Object.entries(errors)) {
      $(`err-${field}`).textContent = message;
      $(`err-${field}`).hidden = false;
    }
    return;
  }
  body.id = crypto.randomUUID();
  await store.enqueue("group", body, { group_id: body.id });
  const group = { ...body, origin: body.origin ?? null, status: "waiting", current_count: null, last_observed_at: null, local: true };
  await store.put("groups", group);
  notice(M.group_saved);
  kick();
  await openCount(group);
}

async function queueChange(group, body) {
  await store.enqueue("change", body, { group_id: group.id });
  // Shown at once as it will be; the server's answer replaces it after the sync.
  await store.put("groups", { ...group, ...body });
  notice(M.status_saved);
  await render();
  kick();
}

function openDetail(group) {
  state.group = group;
  show("detail");
}

// --- syncing ---------------------------------------------------------------------------

let timer = null;
let backoff = 0;
const PERIOD = 60_000;
const MOST = 5 * 60_000;

function schedule(ms) {
  clearTimeout(timer);
  timer = setTimeout(() => sync(), ms);
}

// Sync soon (after an action): at once when online.
function kick() {
  if (navigator.onLine) schedule(0);
}

export async function sync() {
  clearTimeout(timer);
  if (!(await store.setting("token"))) return;
  state.syncing = true;
  await render();
  let outcome;
  try {
    outcome = await exclusive(async () => {
      await sendQueued(LIMITS.batch_limit);
      await refresh();
      const at = new Date().toISOString();
      await store.setSetting("last_sync", at);
      document.body.dataset.lastSync = at; // a whole sync done (the tests wait for it)
      return { ok: true };
    });
    if (outcome && outcome.busy) {
      schedule(5_000); // another tab is syncing; look again in a moment
    } else {
      state.lastError = null;
      backoff = 0;
      schedule(PERIOD);
    }
  } catch (error) {
    if (error instanceof SignedOut) {
      state.lastError = M.token_refused;
      notice(M.token_refused);
    } else if (error instanceof Offline || error instanceof TryLater) {
      backoff = Math.min(MOST, Math.max(5_000, backoff * 2, (error.seconds || 0) * 1000));
      state.lastError = fill(M.sync_failed, { seconds: Math.round(backoff / 1000) });
      schedule(backoff);
    } else {
      throw error;
    }
  } finally {
    state.syncing = false;
    if (channel) channel.postMessage("changed");
    await render();
  }
}

// --- sign-in and sign-out -------------------------------------------------------------

async function signIn(token) {
  await store.setSetting("token", token);
  try {
    const me = await api("GET", "/api/v1/me");
    await store.setSetting("me", me.data);
  } catch (error) {
    if (error instanceof SignedOut) {
      await store.forgetAll();
      return false;
    }
    // Offline: kept, and checked at the next sync.
  }
  if (navigator.storage && navigator.storage.persist) await navigator.storage.persist();
  return true;
}

async function signOut() {
  const items = await store.outbox();
  const unsent = items.filter((i) => i.state === "queued" || i.state === "refused");
  if (unsent.length) {
    if (!confirm(fill(M.confirm_discard, { count: unsent.length }))) {
      await saveCsv({ handing: false });
      return;
    }
  } else if (!confirm(M.confirm_sign_out)) {
    return;
  }
  await store.forgetAll();
  notice(M.signed_out);
  await show("signin");
}

// The counts not sent, as a file to hand over. The import stores them under its own
// token, so a count both imported and then sent from here would be stored twice: once
// the file is on its way, this phone stops sending them ("handed"), if the person says so.
async function saveCsv({ handing = true } = {}) {
  const [items, groups] = await Promise.all([store.outbox(), store.all("groups")]);
  const { text, count, rows } = outboxCsv(items, new Map(groups.map((g) => [g.id, g])), LIMITS);
  const blob = new Blob([text], { type: "text/csv;charset=utf-8" });
  const link = el("a", { href: URL.createObjectURL(blob), download: `needs-tracker-outbox-${new Date().toISOString().slice(0, 19).replace(/:/g, "-")}.csv` });
  document.body.append(link);
  link.click();
  link.remove();
  notice(fill(M.csv_saved, { count }));
  if (handing && count && confirm(M.confirm_handed)) {
    const at = new Date().toISOString();
    for (const item of rows) await store.settle(item.n, { state: "handed", answered_at: at });
    // A group registered here that the file names by its label is registered by the
    // import: this phone does not register it again under its own id.
    const named = new Set(rows.filter((r) => r.by_label).map((r) => r.group_id));
    for (const item of items) {
      if (item.kind === "group" && item.state === "queued" && named.has(item.body.id)) {
        await store.settle(item.n, { state: "handed", answered_at: at });
      }
    }
    await render();
  }
}

async function setLanguage(lang) {
  document.cookie = `lang=${lang}; path=/; max-age=31536000; samesite=lax`;
  const cache = await caches.open("needs-tracker-field-settings");
  await cache.put("/field/lang", new Response(lang));
  location.reload();
}

// --- start ---------------------------------------------------------------------------

async function start() {
  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register("/field/sw.js", { scope: "/field/" }).catch(() => {});
  }
  if ("caches" in self) {
    caches.open("needs-tracker-field-settings").then((c) => c.put("/field/lang", new Response(LANG)));
  }
  // The sign-in link: the token is in the fragment, which no server sees. Taken out of
  // the address bar (and the history) at once.
  const fragment = new URLSearchParams(location.hash.slice(1));
  const fromLink = fragment.get("token");
  if (location.hash) history.replaceState(null, "", location.pathname + location.search);

  for (const tab of document.querySelectorAll("#tabs button")) {
    tab.addEventListener("click", () => {
      notice("");
      show(tab.dataset.view);
    });
  }
  for (const button of document.querySelectorAll(".sync-now")) button.addEventListener("click", () => sync());
  for (const button of document.querySelectorAll("button.back")) button.addEventListener("click", () => show(state.back));
  for (const button of document.querySelectorAll("button.lang")) {
    button.addEventListener("click", () => setLanguage(button.dataset.lang));
  }
  $("new-group").addEventListener("click", openGroupForm);
  $("count-form").addEventListener("submit", saveCount);
  $("count-form").addEventListener("input", updateSum);
  $("group-form").addEventListener("submit", saveGroup);
  $("add-need").addEventListener("click", () => addNeed());
  $("detail-count").addEventListener("click", () => openCount(state.group));
  $("detail-move-go").addEventListener("click", () => queueChange(state.group, { site_id: $("detail-move").value }));
  $("save-csv").addEventListener("click", () => saveCsv());
  $("sign-out").addEventListener("click", signOut);
  $("signin-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const token = $("signin-token").value.trim();
    if (token && (await signIn(token))) {
      $("signin-token").value = "";
      await show("groups");
      sync();
    } else {
      $("signin-error").textContent = M.token_refused;
      $("signin-error").hidden = false;
    }
  });
  window.addEventListener("online", () => {
    backoff = 0;
    sync();
  });
  window.addEventListener("offline", () => render());
  if (channel) channel.onmessage = () => render();

  if (fromLink) {
    if (!(await signIn(fromLink))) {
      await show("signin");
      $("signin-error").textContent = M.token_refused;
      $("signin-error").hidden = false;
      return;
    }
  }
  if (!(await store.setting("token"))) {
    await show("signin");
    return;
  }
  await show("groups");
  document.body.dataset.ready = "yes";
  if (navigator.onLine) sync();
  else schedule(PERIOD);
}

start();
