// ledgerq live dashboard.
//
// Data flow: GET /v1/queues (every page) gives the state at a read-side
// position; EventSource /v1/subscribe?after=<that position> then streams
// every later change, so nothing falls between the two. Each update carries
// its position (the SSE id), and an update older than what a queue already
// shows is ignored, which makes replays after a reconnect harmless.
//
// Every text that comes from the server goes into the page through
// textContent or Text nodes, never as markup.
"use strict";

(() => {
  const TOKEN_KEY = "ledgerq.token";
  const SAMPLE_MS = 1000; // one sample per queue per second
  const WINDOW_MS = 5 * 60 * 1000; // the charts' time span
  const RATE_WINDOW_MS = 10 * 1000; // rates average over this much
  const FEED_MAX = 200;
  const LIST_PAGE = 1000;
  const LIST_MAX_PAGES = 100;
  const BACKOFF_MIN_MS = 1000;
  const BACKOFF_MAX_MS = 15000;
  const OLDEST_WARN_MS = 60 * 1000;
  const BODY_PREVIEW_CHARS = 64 * 1024;

  const STATS = ["ready", "delayed", "in_flight", "oldest_ready_age_ms"];
  const RATES = ["published_rate", "acked_rate"];
  const TOTALS = ["published_total", "acked_total", "dead_lettered_total"];

  const $ = (id) => document.getElementById(id);
  const ui = {
    conn: $("conn-state"),
    connText: $("conn-text"),
    form: $("token-form"),
    input: $("token-input"),
    forget: $("token-forget"),
    notice: $("notice"),
    rows: $("queue-rows"),
    table: $("queues"),
    empty: $("queues-empty"),
    filter: $("queue-filter"),
    chartTitle: $("chart-title"),
    chartLegend: $("chart-legend"),
    feed: $("feed"),
    feedEmpty: $("feed-empty"),
    feedStatus: $("feed-status"),
    feedPause: $("feed-pause"),
    feedClear: $("feed-clear"),
    feedAll: $("feed-all"),
    lastPosition: $("last-position"),
    lastUpdate: $("last-update"),
    dialog: $("message-dialog"),
    dialogTitle: $("message-title"),
    dialogBody: $("message-body"),
  };
  // The first-visit help, kept to show again after Forget.
  const welcome = Array.from(ui.empty.cloneNode(true).childNodes);
  const totalNodes = Array.from(document.querySelectorAll("[data-total]"));

  const numberFmt = new Intl.NumberFormat("en-US");
  const rateFmt1 = new Intl.NumberFormat("en-US", { minimumFractionDigits: 1, maximumFractionDigits: 1 });
  const rateFmt0 = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });

  // ---- state ------------------------------------------------------------
  // name → { name, q (the queue object), position, samples, rates, row, cells … }
  const queues = new Map();
  let token = null;
  let source = null; // the open EventSource, if any
  let generation = 0; // bumps whenever the connection is replaced: stale callbacks check it
  let retryTimer = 0;
  let backoff = BACKOFF_MIN_MS;
  let loaded = false; // a queue list arrived for this token
  let lastPosition = 0;
  let lastUpdateAt = 0;
  let chartMode = "depth";
  let sortKey = "name";
  let sortDir = 1;
  let filterText = "";
  let colors = {};

  const feedLog = []; // newest first, at most FEED_MAX
  let feedPending = []; // arrived since the last render, oldest first
  let feedRebuild = false;
  let feedPaused = false;
  let feedMissed = 0;
  let feedQueue = null; // show only this queue's events

  // ---- small helpers ------------------------------------------------------
  // el builds an element; string children become Text nodes (never parsed).
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children) {
      if (c !== null && c !== undefined) node.append(c);
    }
    return node;
  }

  function fmtCount(n) {
    return Number.isFinite(n) ? numberFmt.format(n) : "–";
  }

  function fmtRate(r) {
    if (r === null || !Number.isFinite(r)) return "–";
    return r < 10 ? rateFmt1.format(r) : rateFmt0.format(r);
  }

  function fmtAge(ms) {
    if (!Number.isFinite(ms) || ms <= 0) return "–";
    if (ms < 1000) return Math.round(ms) + " ms";
    const s = ms / 1000;
    if (s < 60) return (s < 10 ? s.toFixed(1) : Math.round(s)) + " s";
    const m = Math.floor(s / 60);
    if (m < 60) return m + "m " + String(Math.floor(s % 60)).padStart(2, "0") + "s";
    const h = Math.floor(m / 60);
    if (h < 48) return h + "h " + String(m % 60).padStart(2, "0") + "m";
    return Math.floor(h / 24) + "d " + (h % 24) + "h";
  }

  function fmtClock(d) {
    return d.toLocaleTimeString("en-GB", { hour12: false });
  }

  function fmtTime(iso) {
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? String(iso) : d.toISOString().replace("T", " ").replace("Z", " UTC");
  }

  function num(v) {
    const n = Number(v);
    return Number.isFinite(n) ? n : 0;
  }

  function readColors() {
    const css = getComputedStyle(document.documentElement);
    const get = (name) => css.getPropertyValue(name).trim();
    colors = {
      ready: get("--ready"),
      delayed: get("--delayed"),
      inflight: get("--inflight"),
      pub: get("--pub"),
      ack: get("--ack"),
      line: get("--line"),
    };
  }

  // ---- connection state ---------------------------------------------------
  const CONN_TEXT = {
    idle: "no token",
    connecting: "connecting…",
    live: "live",
    reconnecting: "reconnecting…",
    unauthorized: "unauthorized",
    forbidden: "forbidden",
  };

  function setConn(state) {
    ui.conn.dataset.state = state;
    ui.connText.textContent = CONN_TEXT[state];
  }

  function showNotice(text, level) {
    ui.notice.textContent = text;
    ui.notice.dataset.level = level || "error";
    ui.notice.hidden = false;
  }

  function hideNotice() {
    ui.notice.hidden = true;
    ui.notice.textContent = "";
  }

  function authHeaders() {
    return { Authorization: "Bearer " + token, Accept: "application/json" };
  }

  async function problemDetail(res) {
    try {
      const p = await res.json();
      if (p && typeof p.detail === "string" && p.detail) return p.detail;
      if (p && typeof p.title === "string") return p.title;
    } catch (_) {
      // Not JSON: fall back to the status line.
    }
    return res.status + " " + res.statusText;
  }

  // connect (re)starts everything with the current token.
  function connect() {
    disconnect();
    const gen = ++generation;
    backoff = BACKOFF_MIN_MS;
    setConn("connecting");
    sync(gen);
  }

  function disconnect() {
    generation++;
    clearTimeout(retryTimer);
    closeStream();
  }

  // sync loads every queue, then opens the stream after the list's position
  // unless it is open. It also serves as the probe after the stream fails:
  // EventSource does not say why, a plain request does (401, 403, 429, 5xx
  // or no network). And it runs after the browser reopened the stream by
  // itself, to notice a server whose log is younger than what we saw (a
  // wiped data directory): then everything starts over from the list.
  async function sync(gen) {
    let result;
    try {
      result = await loadQueues(gen);
    } catch (_) {
      // With the stream open, the list was only a check: keep streaming.
      if (gen === generation && !source) retry(gen, "The server cannot be reached; retrying.");
      return;
    }
    if (gen !== generation || result === null) return;
    if (result.status === 401 || result.status === 403) closeStream();
    if (result.status === 401) {
      setConn("unauthorized");
      showNotice("The server refused this token (401: " + result.detail + "). Paste a new one.");
      return;
    }
    if (result.status === 403) {
      setConn("forbidden");
      showNotice("This token may not read queues (403: " + result.detail + "). It needs scope queues:read.");
      return;
    }
    if (result.status !== 200) {
      if (!source) retry(gen, "The server answered " + result.status + " (" + result.detail + "); retrying.", result.retryAfterMs);
      return;
    }
    hideNotice();
    if (result.position !== null && result.position < lastPosition) {
      closeStream();
      for (const e of queues.values()) e.position = 0;
      lastPosition = 0;
    }
    applyList(result.queues, result.position || 0);
    if (!source) openStream(gen);
  }

  function closeStream() {
    if (source) {
      source.close();
      source = null;
    }
  }

  async function loadQueues(gen) {
    const all = [];
    let position = null;
    let cursor = "";
    for (let page = 0; page < LIST_MAX_PAGES; page++) {
      const params = new URLSearchParams({ limit: String(LIST_PAGE) });
      if (cursor) params.set("cursor", cursor);
      const res = await fetch("/v1/queues?" + params, { headers: authHeaders(), cache: "no-store" });
      if (gen !== generation) return null;
      if (!res.ok) {
        return {
          status: res.status,
          detail: await problemDetail(res),
          retryAfterMs: retryAfterMs(res.headers.get("Retry-After")),
        };
      }
      // Pages may come from later read-side positions; the first is the
      // oldest, so resuming after it misses nothing.
      const header = res.headers.get("X-Ledgerq-Position");
      if (position === null && header !== null && Number.isFinite(Number(header))) position = Number(header);
      const body = await res.json();
      if (gen !== generation) return null;
      if (Array.isArray(body.queues)) all.push(...body.queues);
      cursor = typeof body.next_cursor === "string" ? body.next_cursor : "";
      if (!cursor) break;
    }
    return { status: 200, queues: all, position };
  }

  // retryAfterMs reads Retry-After, which is seconds or an HTTP-date.
  function retryAfterMs(value) {
    if (!value) return 0;
    const secs = Number(value);
    if (Number.isFinite(secs)) return Math.max(0, secs * 1000);
    const at = Date.parse(value);
    return Number.isFinite(at) ? Math.max(0, at - Date.now()) : 0;
  }

  function retry(gen, message, afterMs) {
    setConn("reconnecting");
    if (message) showNotice(message, "info");
    const wait = Math.max(afterMs || 0, backoff) * (0.8 + Math.random() * 0.4);
    backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
    clearTimeout(retryTimer);
    retryTimer = setTimeout(() => {
      if (gen === generation) sync(gen);
    }, wait);
  }

  function openStream(gen) {
    const params = new URLSearchParams({ access_token: token, kinds: "queue,message" });
    if (lastPosition > 0) params.set("after", String(lastPosition));
    const es = new EventSource("/v1/subscribe?" + params);
    source = es;
    let opened = false;
    const live = (fn) => (ev) => {
      if (gen === generation && source === es) fn(ev);
    };
    es.onopen = live(() => {
      backoff = BACKOFF_MIN_MS;
      setConn("live");
      hideNotice();
      if (opened) sync(gen);
      opened = true;
    });
    es.onerror = live(() => {
      if (es.readyState === EventSource.CONNECTING) {
        // The browser retries by itself, sending Last-Event-ID.
        setConn("reconnecting");
        return;
      }
      // CLOSED: the server refused the stream. Start over from the list,
      // which also tells 401 from 403 from an outage.
      closeStream();
      retry(gen);
    });
    es.addEventListener("queue.updated", live(onQueueUpdated));
    es.addEventListener("queue.deleted", live(onQueueDeleted));
    es.addEventListener("message.updated", live(onMessageUpdated));
  }

  // ---- applying updates ---------------------------------------------------
  function parse(ev) {
    const position = Number(ev.lastEventId) || 0;
    if (position > lastPosition) lastPosition = position;
    lastUpdateAt = Date.now();
    try {
      return { position, data: JSON.parse(ev.data) };
    } catch (_) {
      return { position, data: null };
    }
  }

  function applyList(list, position) {
    const seen = new Set();
    for (const q of list) {
      if (!q || typeof q.name !== "string") continue;
      seen.add(q.name);
      upsert(q, position);
    }
    // Gone while we were away, unless an update newer than the list shows it.
    for (const [name, e] of queues) {
      if (!seen.has(name) && e.position <= position) removeQueue(name);
    }
    if (position > lastPosition) lastPosition = position;
    lastUpdateAt = Date.now();
    loaded = true;
    scheduleRender();
  }

  function onQueueUpdated(ev) {
    const { position, data } = parse(ev);
    if (!data || typeof data.name !== "string") return;
    const isNew = !queues.has(data.name);
    if (upsert(data, position) && isNew && !data.snapshot) {
      pushFeed({ kind: "queue", state: "created", queue: data.name });
    }
    scheduleRender();
  }

  function onQueueDeleted(ev) {
    const { position, data } = parse(ev);
    if (!data || typeof data.name !== "string") return;
    const e = queues.get(data.name);
    if (e && position && position <= e.position) return;
    if (e) removeQueue(data.name);
    if (!data.snapshot) pushFeed({ kind: "queue", state: "deleted", queue: data.name });
    scheduleRender();
  }

  function onMessageUpdated(ev) {
    const { data } = parse(ev);
    if (!data || typeof data.id !== "string" || data.snapshot) {
      scheduleRender();
      return;
    }
    pushFeed({
      kind: "message",
      state: String(data.state || ""),
      queue: String(data.queue || ""),
      id: data.id,
      receiveCount: num(data.receive_count),
    });
    scheduleRender();
  }

  // upsert applies a queue object seen at position; false when it is older
  // than what the queue already shows.
  function upsert(q, position) {
    let e = queues.get(q.name);
    if (e && position && position < e.position) return false;
    if (!e) {
      e = { name: q.name, q, position: 0, samples: [], rates: { published_rate: null, acked_rate: null }, row: null, cells: null };
      queues.set(q.name, e);
    }
    e.q = q;
    if (position) e.position = position;
    e.dirty = true;
    return true;
  }

  function removeQueue(name) {
    const e = queues.get(name);
    if (!e) return;
    if (e.row) e.row.remove();
    queues.delete(name);
  }

  function pushFeed(item) {
    item.at = new Date();
    feedLog.unshift(item);
    if (feedLog.length > FEED_MAX) feedLog.length = FEED_MAX;
    if (feedPaused) {
      feedMissed++;
      return;
    }
    feedPending.push(item);
    if (feedPending.length > FEED_MAX) feedPending = feedPending.slice(-FEED_MAX);
  }

  // ---- sampling and rates ---------------------------------------------------
  function sample() {
    const now = Date.now();
    for (const e of queues.values()) {
      const s = e.q.stats || {};
      const point = {
        t: now,
        ready: num(s.ready),
        delayed: num(s.delayed),
        inflight: num(s.in_flight),
        pub: num(s.published_total),
        ack: num(s.acked_total),
      };
      const last = e.samples[e.samples.length - 1];
      // Counters only grow, unless the queue was deleted and created again.
      if (last && (point.pub < last.pub || point.ack < last.ack)) e.samples.length = 0;
      e.samples.push(point);
      while (e.samples.length && e.samples[0].t < now - WINDOW_MS - SAMPLE_MS) e.samples.shift();
      e.rates = rates(e.samples, now);
      e.dirty = true;
    }
    scheduleRender(true);
  }

  function rates(samples, now) {
    const last = samples[samples.length - 1];
    let first = null;
    for (const s of samples) {
      if (s.t >= now - RATE_WINDOW_MS - SAMPLE_MS / 2) {
        first = s;
        break;
      }
    }
    if (!first || last.t - first.t < SAMPLE_MS / 2) return { published_rate: null, acked_rate: null };
    const secs = (last.t - first.t) / 1000;
    return {
      published_rate: (last.pub - first.pub) / secs,
      acked_rate: (last.ack - first.ack) / secs,
    };
  }

  // ---- rendering ------------------------------------------------------------
  let renderQueued = false;
  let chartsDue = false;

  function scheduleRender(withCharts) {
    if (withCharts) chartsDue = true;
    if (renderQueued) return;
    renderQueued = true;
    requestAnimationFrame(() => {
      renderQueued = false;
      render();
    });
  }

  function render() {
    renderRows();
    renderTotals();
    renderFeed();
    if (chartsDue) {
      chartsDue = false;
      for (const e of queues.values()) if (e.row && !e.row.hidden) drawChart(e);
    }
    ui.lastPosition.textContent = lastPosition ? numberFmt.format(lastPosition) : "–";
    const ago = lastUpdateAt ? Date.now() - lastUpdateAt : -1;
    ui.lastUpdate.textContent = ago < 0 ? "–" : ago < 1000 ? "just now" : fmtAge(ago) + " ago";
  }

  function makeRow(e) {
    const cells = {};
    const nameBtn = el("button", { type: "button", title: "Show only this queue's events" }, e.name);
    nameBtn.addEventListener("click", () => setFeedQueue(feedQueue === e.name ? null : e.name));
    const dlq = el("span", { class: "dlq" });
    const nameCell = el("th", { scope: "row", class: "qname", "data-stat": "name" }, nameBtn, dlq);
    const tr = el("tr", { "data-queue": e.name }, nameCell);
    for (const key of [...STATS, ...RATES, ...TOTALS]) {
      const td = el("td", { class: "num zero", "data-stat": key, "data-value": "0" }, "–");
      cells[key] = td;
      tr.append(td);
    }
    const canvas = el("canvas", { class: "spark", width: "160", height: "30", role: "img" });
    tr.append(el("td", { class: "chart" }, canvas));
    e.row = tr;
    e.cells = cells;
    e.dlq = dlq;
    e.canvas = canvas;
    e.shown = {};
  }

  function setCell(e, key, value, text) {
    if (e.shown[key] === text) return;
    const td = e.cells[key];
    e.shown[key] = text;
    td.textContent = text;
    td.dataset.value = value === null || !Number.isFinite(value) ? "" : String(value);
    td.classList.toggle("zero", !value);
  }

  function renderRows() {
    const needle = filterText.toLowerCase();
    let visible = 0;
    for (const e of queues.values()) {
      if (!e.row) makeRow(e);
      e.row.hidden = needle !== "" && !e.name.toLowerCase().includes(needle);
      if (!e.row.hidden) visible++;
      if (!e.dirty) continue;
      e.dirty = false;
      const s = e.q.stats || {};
      for (const key of STATS) {
        const v = num(s[key]);
        setCell(e, key, v, key === "oldest_ready_age_ms" ? fmtAge(v) : fmtCount(v));
      }
      e.cells.oldest_ready_age_ms.classList.toggle("stale", num(s.oldest_ready_age_ms) > OLDEST_WARN_MS);
      for (const key of TOTALS) setCell(e, key, num(s[key]), fmtCount(num(s[key])));
      for (const key of RATES) setCell(e, key, e.rates[key], fmtRate(e.rates[key]));
      const a = e.q.attributes || {};
      const dlqText = a.dead_letter_queue ? "→ " + a.dead_letter_queue : "";
      if (e.dlq.textContent !== dlqText) {
        e.dlq.textContent = dlqText;
        e.dlq.title = a.dead_letter_queue ? "Dead-letter queue after " + a.max_receive_count + " receives" : "";
      }
      e.row.title = "visibility " + fmtAge(num(a.visibility_timeout_ms)) + " · retention " + fmtAge(num(a.retention_ms)) +
        " · max " + fmtCount(num(a.max_message_bytes)) + " bytes";
    }
    sortRows();
    renderEmpty(visible);
  }

  function sortValue(e) {
    if (sortKey === "name") return e.name;
    if (sortKey in e.rates) return e.rates[sortKey] || 0;
    return num((e.q.stats || {})[sortKey]);
  }

  function sortRows() {
    const list = Array.from(queues.values());
    list.sort((a, b) => {
      const va = sortValue(a);
      const vb = sortValue(b);
      const c = typeof va === "string" ? va.localeCompare(vb) : va - vb || a.name.localeCompare(b.name);
      return c * sortDir;
    });
    let i = 0;
    for (const e of list) {
      if (ui.rows.children[i] !== e.row) ui.rows.insertBefore(e.row, ui.rows.children[i] || null);
      i++;
    }
  }

  let emptyShown = "welcome";

  function renderEmpty(visible) {
    let kind = "";
    const refused = ["unauthorized", "forbidden"].includes(ui.conn.dataset.state);
    if (!token) kind = "welcome";
    else if (!loaded) kind = refused ? "refused" : "waiting";
    else if (queues.size === 0) kind = "none";
    else if (visible === 0) kind = "nomatch:" + filterText;
    ui.table.hidden = !token || queues.size === 0;
    ui.empty.hidden = kind === "";
    if (kind === emptyShown) return;
    emptyShown = kind;
    if (kind === "welcome") ui.empty.replaceChildren(...welcome.map((n) => n.cloneNode(true)));
    else if (kind === "none") ui.empty.replaceChildren(el("p", null, "No queues yet, or none this token may see."));
    else if (kind === "waiting") ui.empty.replaceChildren(el("p", { class: "muted" }, "Waiting for the server…"));
    else if (kind === "refused") ui.empty.replaceChildren(el("p", { class: "muted" }, "Not connected: the server refused the token."));
    else if (kind !== "") ui.empty.replaceChildren(el("p", null, "No queue matches “" + filterText + "”."));
  }

  function renderTotals() {
    const t = { queues: queues.size, ready: 0, delayed: 0, in_flight: 0, dead_lettered_total: 0, published_rate: null, acked_rate: null };
    for (const e of queues.values()) {
      const s = e.q.stats || {};
      t.ready += num(s.ready);
      t.delayed += num(s.delayed);
      t.in_flight += num(s.in_flight);
      t.dead_lettered_total += num(s.dead_lettered_total);
      for (const key of RATES) {
        if (e.rates[key] !== null) t[key] = (t[key] || 0) + e.rates[key];
      }
    }
    for (const node of totalNodes) {
      const key = node.dataset.total;
      const v = loaded ? t[key] : null;
      const text = v === null || v === undefined ? "–" : key.endsWith("_rate") ? fmtRate(v) : fmtCount(v);
      if (node.textContent !== text) node.textContent = text;
      node.dataset.value = v === null || v === undefined ? "" : String(v);
    }
  }

  function feedItem(item) {
    const li = el("li", { "data-kind": item.kind, "data-queue": item.queue });
    li.append(el("time", { datetime: item.at.toISOString() }, fmtClock(item.at)));
    li.append(el("span", { class: "badge", "data-state": item.state }, item.state.replace("_", " ")));
    const what = el("span", { class: "what" }, el("span", { class: "q" }, item.queue));
    if (item.id) {
      const btn = el("button", { type: "button", class: "id", title: "Show message " + item.id }, item.id.length > 12 ? "…" + item.id.slice(-10) : item.id);
      btn.addEventListener("click", () => showMessage(item.id));
      what.append(btn);
    } else {
      what.append(el("span", { class: "muted" }, item.state === "deleted" ? " queue deleted" : " queue created"));
    }
    if (item.receiveCount > 1) what.append(el("span", { class: "rc", title: "receive count" }, " ×" + item.receiveCount));
    li.append(what);
    return li;
  }

  function renderFeed() {
    const match = (item) => feedQueue === null || item.queue === feedQueue;
    if (feedRebuild) {
      feedRebuild = false;
      feedPending = [];
      ui.feed.replaceChildren(...feedLog.filter(match).map(feedItem));
    } else if (feedPending.length) {
      const frag = document.createDocumentFragment();
      for (let i = feedPending.length - 1; i >= 0; i--) {
        if (match(feedPending[i])) frag.append(feedItem(feedPending[i]));
      }
      feedPending = [];
      ui.feed.prepend(frag);
      while (ui.feed.childElementCount > FEED_MAX) ui.feed.lastElementChild.remove();
    }
    ui.feedEmpty.hidden = ui.feed.childElementCount > 0;
    const parts = [];
    if (feedQueue !== null) parts.push("only " + feedQueue);
    if (feedPaused) parts.push("paused" + (feedMissed ? " · " + numberFmt.format(feedMissed) + " new" : ""));
    const status = parts.join(" · ");
    if (ui.feedStatus.textContent !== status) ui.feedStatus.textContent = status;
    ui.feedAll.hidden = feedQueue === null;
  }

  function setFeedQueue(name) {
    feedQueue = name;
    feedRebuild = true;
    scheduleRender();
  }

  // ---- charts -----------------------------------------------------------------
  function drawChart(e) {
    const canvas = e.canvas;
    const dpr = window.devicePixelRatio || 1;
    const w = 160;
    const hgt = 30;
    if (canvas.width !== w * dpr) {
      canvas.width = w * dpr;
      canvas.height = hgt * dpr;
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, hgt);
    ctx.fillStyle = colors.line;
    ctx.fillRect(0, hgt - 1, w, 1);
    const pts = e.samples;
    if (pts.length < 2) return;
    const now = pts[pts.length - 1].t;
    const x = (t) => ((t - (now - WINDOW_MS)) / WINDOW_MS) * w;
    if (chartMode === "depth") {
      const layers = [
        ["ready", colors.ready, (p) => p.ready],
        ["delayed", colors.delayed, (p) => p.ready + p.delayed],
        ["in flight", colors.inflight, (p) => p.ready + p.delayed + p.inflight],
      ];
      const max = Math.max(1, ...pts.map(layers[2][2]));
      const y = (v) => hgt - 1 - (v / max) * (hgt - 3);
      // Paint top layer first so lower layers cover it: a stacked area.
      for (let i = layers.length - 1; i >= 0; i--) {
        const top = layers[i][2];
        ctx.beginPath();
        ctx.moveTo(x(pts[0].t), hgt - 1);
        for (const p of pts) ctx.lineTo(x(p.t), y(top(p)));
        ctx.lineTo(x(now), hgt - 1);
        ctx.closePath();
        ctx.globalAlpha = 0.85;
        ctx.fillStyle = layers[i][1];
        ctx.fill();
      }
      ctx.globalAlpha = 1;
      const lastDepth = layers[2][2](pts[pts.length - 1]);
      canvas.setAttribute("aria-label", "depth over 5 minutes, max " + fmtCount(max) + ", now " + fmtCount(lastDepth));
      canvas.title = "Depth (ready + delayed + in flight), 5 min. Max " + fmtCount(max) + ".";
    } else {
      const series = [[], []];
      for (let i = 1; i < pts.length; i++) {
        const dt = (pts[i].t - pts[i - 1].t) / 1000;
        if (dt <= 0) continue;
        series[0].push([pts[i].t, (pts[i].pub - pts[i - 1].pub) / dt]);
        series[1].push([pts[i].t, (pts[i].ack - pts[i - 1].ack) / dt]);
      }
      let max = 1;
      for (const s of series) for (const [, v] of s) max = Math.max(max, v);
      const y = (v) => hgt - 1.5 - (v / max) * (hgt - 4);
      ctx.lineWidth = 1.5;
      ctx.lineJoin = "round";
      [colors.pub, colors.ack].forEach((color, i) => {
        ctx.beginPath();
        series[i].forEach(([t, v], j) => (j ? ctx.lineTo(x(t), y(v)) : ctx.moveTo(x(t), y(v))));
        ctx.strokeStyle = color;
        ctx.stroke();
      });
      canvas.setAttribute("aria-label", "published and acked per second over 5 minutes, max " + fmtRate(max));
      canvas.title = "Published/s (blue) and acked/s (green), 5 min. Max " + fmtRate(max) + "/s.";
    }
  }

  function setChartMode(mode) {
    chartMode = mode;
    for (const b of document.querySelectorAll("[data-chart]")) b.setAttribute("aria-pressed", String(b.dataset.chart === mode));
    ui.chartTitle.textContent = mode === "depth" ? "Depth, 5 min" : "Throughput, 5 min";
    const keys = mode === "depth"
      ? [["ready", colors.ready], ["delayed", colors.delayed], ["in flight", colors.inflight]]
      : [["published/s", colors.pub], ["acked/s", colors.ack]];
    ui.chartLegend.replaceChildren(...keys.map(([label, color]) => {
      const swatch = el("i");
      swatch.style.background = color; // CSSOM, which the page's CSP allows
      return el("span", null, swatch, label);
    }));
    scheduleRender(true);
  }

  // ---- message details -----------------------------------------------------
  async function showMessage(id) {
    ui.dialogTitle.textContent = id;
    ui.dialogBody.replaceChildren(el("p", { class: "muted" }, "Loading…"));
    if (!ui.dialog.open) ui.dialog.showModal();
    let res;
    try {
      res = await fetch("/v1/messages/" + encodeURIComponent(id), { headers: authHeaders(), cache: "no-store" });
    } catch (_) {
      ui.dialogBody.replaceChildren(el("p", null, "The server cannot be reached."));
      return;
    }
    if (!res.ok) {
      ui.dialogBody.replaceChildren(el("p", null, "The server answered " + res.status + ": " + (await problemDetail(res))));
      return;
    }
    let m;
    try {
      m = await res.json();
    } catch (_) {
      ui.dialogBody.replaceChildren(el("p", null, "The answer was not JSON."));
      return;
    }
    const dl = el("dl");
    const row = (k, v) => dl.append(el("dt", null, k), el("dd", null, v));
    row("Queue", String(m.queue || ""));
    row("State", el("span", { class: "badge", "data-state": String(m.state || "") }, String(m.state || "").replace("_", " ")));
    row("Receive count", String(num(m.receive_count)));
    row("Published", fmtTime(m.published_at));
    if (m.content_type) row("Content type", String(m.content_type));
    const headers = m.headers && typeof m.headers === "object" ? Object.entries(m.headers) : [];
    row("Headers", headers.length ? headers.map(([k, v]) => k + ": " + v).join("\n") : "none");
    const body = typeof m.body === "string" ? m.body : "";
    const parts = [dl, el("h3", null, "Body" + (m.body_encoding === "base64" ? " (base64)" : "") + " · " + numberFmt.format(body.length) + " chars")];
    parts.push(el("pre", null, body.length > BODY_PREVIEW_CHARS ? body.slice(0, BODY_PREVIEW_CHARS) + "\n… (truncated)" : body));
    parts.push(el("h3", null, "History"));
    const tbody = el("tbody");
    for (const h of Array.isArray(m.history) ? m.history : []) {
      tbody.append(el("tr", null,
        el("td", { class: "num" }, numberFmt.format(num(h.position))),
        el("td", null, String(h.type || "")),
        el("td", { class: "muted" }, fmtTime(h.recorded_at))));
    }
    parts.push(el("table", null, el("thead", null, el("tr", null, el("th", { class: "num" }, "Position"), el("th", null, "Event"), el("th", null, "Recorded"))), tbody));
    ui.dialogBody.replaceChildren(...parts);
  }

  // ---- token handling -----------------------------------------------------------
  function useToken(t) {
    token = t;
    try {
      sessionStorage.setItem(TOKEN_KEY, t);
    } catch (_) {
      // Storage disabled: the token lives until the page is closed.
    }
    ui.forget.disabled = false;
    ui.input.value = "";
    ui.input.placeholder = "Token set · paste another to replace it";
    resetData();
    connect();
  }

  function forget() {
    disconnect();
    token = null;
    try {
      sessionStorage.removeItem(TOKEN_KEY);
    } catch (_) {
      // Nothing stored.
    }
    ui.forget.disabled = true;
    ui.input.value = "";
    ui.input.placeholder = "Paste a token with scope queues:read";
    resetData();
    hideNotice();
    setConn("idle");
    ui.input.focus();
  }

  function resetData() {
    for (const name of Array.from(queues.keys())) removeQueue(name);
    loaded = false;
    lastPosition = 0;
    lastUpdateAt = 0;
    feedLog.length = 0;
    feedMissed = 0;
    feedQueue = null;
    feedRebuild = true;
    scheduleRender(true);
  }

  // A link like /#token=… (from a script or `ledgerq token`) connects at once;
  // the fragment never reaches the server and is removed from history here.
  function tokenFromFragment() {
    const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
    if (!m) return null;
    history.replaceState(null, "", location.pathname + location.search);
    try {
      return decodeURIComponent(m[1]);
    } catch (_) {
      return null;
    }
  }

  // ---- wiring --------------------------------------------------------------------
  function init() {
    readColors();
    window.matchMedia("(prefers-color-scheme: light)").addEventListener("change", () => {
      readColors();
      setChartMode(chartMode);
    });
    setChartMode(chartMode);

    ui.form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const t = ui.input.value.trim().replace(/^Bearer\s+/i, "");
      if (t) useToken(t);
      else ui.input.focus();
    });
    ui.forget.addEventListener("click", forget);
    ui.filter.addEventListener("input", () => {
      filterText = ui.filter.value.trim();
      scheduleRender(true);
    });
    for (const b of document.querySelectorAll("[data-chart]")) b.addEventListener("click", () => setChartMode(b.dataset.chart));
    for (const th of document.querySelectorAll("th[data-sort]")) {
      th.addEventListener("click", () => {
        const key = th.dataset.sort;
        sortDir = sortKey === key ? -sortDir : key === "name" ? 1 : -1;
        sortKey = key;
        for (const o of document.querySelectorAll("th[data-sort]")) o.removeAttribute("aria-sort");
        th.setAttribute("aria-sort", sortDir === 1 ? "ascending" : "descending");
        scheduleRender();
      });
    }
    ui.feedPause.addEventListener("click", () => {
      feedPaused = !feedPaused;
      ui.feedPause.setAttribute("aria-pressed", String(feedPaused));
      ui.feedPause.textContent = feedPaused ? "Resume" : "Pause";
      if (!feedPaused) {
        feedMissed = 0;
        feedRebuild = true;
      }
      scheduleRender();
    });
    ui.feedAll.addEventListener("click", () => setFeedQueue(null));
    ui.feedClear.addEventListener("click", () => {
      feedLog.length = 0;
      feedMissed = 0;
      feedRebuild = true;
      scheduleRender();
    });

    setInterval(sample, SAMPLE_MS);

    let stored = tokenFromFragment();
    if (!stored) {
      try {
        stored = sessionStorage.getItem(TOKEN_KEY);
      } catch (_) {
        stored = null;
      }
    }
    if (stored) useToken(stored);
    else scheduleRender();
  }

  init();
})();
