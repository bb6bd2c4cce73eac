// What the app keeps on the phone, in IndexedDB (through the vendored `idb`, a small
// promise wrapper: see vendor/README.md): the token and who it is, the groups and sites
// as last read from the server, recent head counts, and the outbox.
//
// The outbox is the durable queue: every action is an item with its client id (a UUID
// made when the action is made) and a state: queued, sent, already (the server had it:
// a resend), refused (with the server's problem), or handed (saved to a CSV file and
// handed over instead). Only queued items are ever sent.

import { openDB } from "./vendor/idb-8.0.4.js";

const NAME = "needs-tracker-field";

let opened = null;

export function db() {
  if (!opened) {
    opened = openDB(NAME, 1, {
      upgrade(database) {
        database.createObjectStore("settings");
        database.createObjectStore("groups", { keyPath: "id" });
        database.createObjectStore("sites", { keyPath: "id" });
        const reports = database.createObjectStore("reports", { keyPath: "id" });
        reports.createIndex("group_id", "group_id");
        const outbox = database.createObjectStore("outbox", { keyPath: "n", autoIncrement: true });
        outbox.createIndex("client_id", "client_id", { unique: true });
      },
    });
  }
  return opened;
}

export async function setting(key) {
  return (await db()).get("settings", key);
}

export async function setSetting(key, value) {
  return (await db()).put("settings", value, key);
}

export async function all(store) {
  return (await db()).getAll(store);
}

export async function get(store, key) {
  return (await db()).get(store, key);
}

export async function put(store, value) {
  return (await db()).put(store, value);
}

// Replace a store's content in one transaction (a refresh from the server).
export async function replace(store, values, keep = () => false) {
  const tx = (await db()).transaction(store, "readwrite");
  for (const old of await tx.store.getAll()) {
    if (!keep(old)) await tx.store.delete(tx.store.keyPath === "n" ? old.n : old.id);
  }
  for (const value of values) await tx.store.put(value);
  await tx.done;
}

// A new action, queued with its client id: one transaction, so it is there or not.
export async function enqueue(kind, body, extra = {}) {
  const item = {
    client_id: crypto.randomUUID(),
    kind,
    body,
    state: "queued",
    made_at: new Date().toISOString(),
    ...extra,
  };
  if (kind === "group") item.client_id = body.id; // the group's own id is its key
  const n = await (await db()).add("outbox", item);
  return { ...item, n };
}

export async function outbox() {
  return (await db()).getAll("outbox"); // in the order made (the key increases)
}

// Update an item by its number, only if it is still in the state it was read in:
// another tab may have answered it meanwhile.
export async function settle(n, changes, from = "queued") {
  const tx = (await db()).transaction("outbox", "readwrite");
  const item = await tx.store.get(n);
  if (item && item.state === from) await tx.store.put({ ...item, ...changes });
  await tx.done;
}

export async function remove(n) {
  return (await db()).delete("outbox", n);
}

// Sign-out: forget the token, the cached groups and the outbox.
export async function forgetAll() {
  const database = await db();
  const stores = ["settings", "groups", "sites", "reports", "outbox"];
  const tx = database.transaction(stores, "readwrite");
  await Promise.all(stores.map((name) => tx.objectStore(name).clear()));
  await tx.done;
}
