// The field app's service worker (scope /field/). Served at /field/sw.js by the
// server, which writes VERSION, SHELLS (the shell in each language) and FILES (the
// app's static files) above this line.
//
// Everything it precaches is served from the cache, online or not: the app opens at
// once on a slow link and with none. A new version (its files changed) is precached
// afresh under a new cache name, and the old cache dropped. It never touches /api/:
// those go to the network as usual and are never cached here (the app keeps its data
// in IndexedDB).

const CACHE = `needs-tracker-field-${VERSION}`;
const SETTINGS = "needs-tracker-field-settings"; // the language chosen, kept by the page
const LANGUAGES = ["en", "hy", "ru"];

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches
      .open(CACHE)
      .then((cache) => cache.addAll([...SHELLS, ...FILES].map((url) => new Request(url, { cache: "reload" }))))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((names) =>
        Promise.all(
          names
            .filter((name) => name.startsWith("needs-tracker-field-") && name !== CACHE && name !== SETTINGS)
            .map((name) => caches.delete(name)),
        ),
      )
      .then(() => self.clients.claim()),
  );
});

async function language(url) {
  const asked = url.searchParams.get("lang");
  if (LANGUAGES.includes(asked)) return asked;
  const kept = await caches.match("/field/lang", { cacheName: SETTINGS });
  if (kept) {
    const lang = await kept.text();
    if (LANGUAGES.includes(lang)) return lang;
  }
  for (const tag of self.navigator.languages || []) {
    const lang = tag.slice(0, 2).toLowerCase();
    if (LANGUAGES.includes(lang)) return lang;
  }
  return "en";
}

async function shell(request, url) {
  const cached = await caches.match(`/field/?lang=${await language(url)}`, { cacheName: CACHE });
  return cached || fetch(request);
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin || url.pathname.startsWith("/api/")) return;
  if (request.mode === "navigate" && url.pathname === "/field/") {
    event.respondWith(shell(request, url));
    return;
  }
  if (FILES.includes(url.pathname)) {
    event.respondWith(caches.match(url.pathname, { cacheName: CACHE }).then((hit) => hit || fetch(request)));
  }
});
