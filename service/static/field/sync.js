// Sending the outbox, and reading back what the server knows.
//
// Items go in the order they were made: a run of head counts as one batch
// (POST /api/v1/reports/batch, each with its client_id as its idempotency key), a new
// group on its own (POST /api/v1/groups with the id chosen on the phone, so the counts
// made for it offline name it), a status change or a move on its own (PATCH). An item
// stays queued until its answer is read and written down; a lost answer, a killed tab
// or a phone that dies mid-sync only means it is sent again, and the server answers the
// resend from its key ("already there"). One tab syncs at a time (Web Locks); the keys
// make it exactly once even without.

import * as store from "./store.js";

export class Offline extends Error {}
export class SignedOut extends Error {}
export class TryLater extends Error {
  constructor(seconds) {
    super("try later");
    this.seconds = seconds;
  }
}

export async function api(method, path, body) {
  const token = await store.setting("token");
  if (!token) throw new SignedOut();
  const init = {
    method,
    cache: "no-store",
    headers: { Authorization: `Bearer ${token}`, Accept: "application/json" },
  };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new Offline();
  }
  if (response.status === 401) throw new SignedOut();
  if (response.status === 429 || response.status >= 500) {
    throw new TryLater(Number(response.headers.get("Retry-After")) || 0);
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    if (response.ok) throw new TryLater(0); // cut off mid-answer
  }
  return { status: response.status, data, headers: response.headers };
}

function problem(data, status) {
  return {
    status,
    detail: (data && data.detail) || String(status),
    errors: (data && data.errors) || [],
  };
}

async function sendGroup(item) {
  const { status, data } = await api("POST", "/api/v1/groups", item.body);
  if (status === 201 || status === 200) {
    await store.settle(item.n, { state: status === 201 ? "sent" : "already", answered_at: now() });
    await store.put("groups", { ...data, local: false });
  } else {
    await store.settle(item.n, { state: "refused", problem: problem(data, status), answered_at: now() });
    const group = await store.get("groups", item.body.id);
    if (group) await store.put("groups", { ...group, refused: true });
  }
}

async function sendChange(item) {
  const { status, data } = await api("PATCH", `/api/v1/groups/${item.group_id}`, item.body);
  if (status === 200) {
    await store.settle(item.n, { state: "sent", answered_at: now() });
    await store.put("groups", { ...data, local: false });
  } else {
    await store.settle(item.n, { state: "refused", problem: problem(data, status), answered_at: now() });
  }
}

async function sendCounts(items) {
  const reports = items.map((item) => ({ ...item.body, client_id: item.client_id }));
  const { status, data } = await api("POST", "/api/v1/reports/batch", { reports });
  if (status !== 200) {
    // The whole batch refused (a token that may not write): each item says why.
    for (const item of items) {
      await store.settle(item.n, { state: "refused", problem: problem(data, status), answered_at: now() });
    }
    return;
  }
  let inFlight = false;
  for (const [index, result] of data.results.entries()) {
    const item = items[index];
    if (result.status === 201 || result.status === 200) {
      const state = result.status === 201 ? "sent" : "already";
      await store.settle(item.n, { state, report: result.report, answered_at: now() });
      await store.put("reports", result.report);
    } else if (result.status === 409) {
      inFlight = true; // another request is storing it right now: ask again later
    } else {
      await store.settle(item.n, {
        state: "refused",
        problem: problem(result.problem, result.status),
        answered_at: now(),
      });
    }
  }
  if (inFlight) throw new TryLater(2);
}

function now() {
  return new Date().toISOString();
}

// Send what is queued, in order; then read the server's state back. Throws Offline,
// TryLater or SignedOut when it has to stop (what was answered stays answered).
export async function sendQueued(batchLimit) {
  const items = (await store.outbox()).filter((item) => item.state === "queued");
  let sent = 0;
  for (let i = 0; i < items.length; ) {
    const item = items[i];
    if (item.kind === "report") {
      const run = [];
      while (i < items.length && items[i].kind === "report" && run.length < batchLimit) {
        run.push(items[i++]);
      }
      await sendCounts(run);
      sent += run.length;
    } else {
      if (item.kind === "group") await sendGroup(item);
      else await sendChange(item);
      sent += 1;
      i += 1;
    }
  }
  return sent;
}

async function pages(path) {
  const found = [];
  for (let page = 1; page < 100; page += 1) {
    const separator = path.includes("?") ? "&" : "?";
    const { status, data } = await api("GET", `${path}${separator}page=${page}&page_size=1000`);
    if (status !== 200) return { status, data: found };
    found.push(...data);
    if (data.length < 1000) break;
  }
  return { status: 200, data: found };
}

// What the server knows now: who this token is, the sites, the groups of its sites with
// their current counts, and the latest head counts (for corrections).
export async function refresh() {
  const me = await api("GET", "/api/v1/me");
  if (me.status !== 200) return;
  await store.setSetting("me", me.data);
  const reader = me.data.role === "reader";
  // At once: on a slow link each round trip costs more than the bytes.
  const [sites, groups, reports] = await Promise.all([
    api("GET", "/api/v1/sites"),
    reader ? null : pages("/api/v1/groups"),
    reader ? null : api("GET", "/api/v1/reports?page_size=300"),
  ]);
  if (sites.status === 200) await store.replace("sites", sites.data);
  if (reader) return;
  if (groups.status === 200) {
    // Groups registered here and not yet answered stay, marked local.
    const pending = new Set(
      (await store.outbox()).filter((i) => i.kind === "group" && i.state === "queued").map((i) => i.body.id),
    );
    const known = new Set(groups.data.map((g) => g.id));
    await store.replace(
      "groups",
      groups.data.map((g) => ({ ...g, local: false })),
      (old) => pending.has(old.id) && !known.has(old.id),
    );
  }
  if (reports.status === 200) await store.replace("reports", reports.data);
  await store.setSetting("groups_as_of", now());
}

// One tab at a time: the others skip (and are told when it is done).
export async function exclusive(work) {
  if (!navigator.locks) return work();
  return navigator.locks.request("needs-tracker-field-sync", { ifAvailable: true }, async (lock) => {
    if (!lock) return { busy: true };
    return work();
  });
}
