/* Saga history: a live view of the recorded events of every declared saga.
 *
 * Plain JavaScript, no build step, no network beyond the recorder's own API:
 *   GET saga-types                           every declared saga's flow (names and titles)
 *   GET sagas?type=&status=&limit=&offset=   the list, with counts per status (of the type)
 *   GET sagas/{saga_id}?type=                one saga: derived steps, ordered timeline, flow
 *
 * Routes live in the URL hash so that every view can be linked:
 *   #/?type=fare&status=failed&offset=25     the list, filtered and paged
 *   #/sagas/<saga_id>?type=fare              one saga (the type is needed only when sagas
 *                                            of two types share the id)
 *
 * Nothing here knows a particular saga: the flow drawing, the service under each step,
 * which events belong to a step and the tone of an event are all read from the saga's
 * declared flow (`Saga.flow()` in contracts/declaration.py), which the API sends along.
 *
 * Every text that comes from the API is put in the page with textContent (never as HTML).
 * Views are updated in place on each poll, keyed by saga and message id, so expanded
 * events, focus and scroll position survive live updates. There is no inline script or
 * handler and no style attribute in markup (styles are set through the CSSOM only), so
 * the page runs under a Content-Security-Policy without 'unsafe-inline'.
 */
"use strict";

(() => {
  const POLL_MS = 1000;
  const HIDDEN_POLL_MS = 5000;
  const REQUEST_TIMEOUT_MS = 5000;
  const PAGE_SIZE = 25;

  const STATUSES = ["running", "succeeded", "failed", "needs_attention", "stuck"];
  const STATUS_LABEL = {
    running: "Running",
    succeeded: "Succeeded",
    failed: "Failed",
    needs_attention: "Needs attention",
    stuck: "Stuck",
  };
  const STATUS_HINT = {
    running: "Steps are still happening",
    succeeded: "Every forward step succeeded",
    failed: "A step failed and every compensation ran",
    needs_attention: "A compensation failed or a message was parked: a human must look",
    stuck: "Running, but no event for longer than the saga deadline",
  };
  const STEP_LABEL = {
    pending: "Pending",
    running: "Running",
    succeeded: "Succeeded",
    failed: "Failed",
    parked: "Parked",
  };
  const STEP_ICON = { pending: "○", running: "◔", succeeded: "✓", failed: "✕", parked: "❚❚" };
  /** Fields worth a glance in an event's one-line summary, in this order. */
  const SUMMARY_FIELDS = [
    "step",
    "error",
    "reason",
    "fields",
    "cause",
    "amount",
    "fareAmount",
    "order_status",
    "fareStatus",
    "failed_compensation",
    "compensation_error",
    "queue",
    "attempts",
    "waited_seconds",
    "transaction_id",
    "chargeId",
  ];
  const SHORT_FIELDS = new Set(["transaction_id", "chargeId"]);
  const ERROR_FIELDS = new Set(["error", "reason", "cause", "compensation_error"]);
  /** How many colours saga type badges cycle through (style.css: .type-badge[data-tone]). */
  const TYPE_TONES = 4;

  /** What the page knows of the declared sagas: their flows by type, in declared order. */
  const catalog = { flows: new Map(), names: [] };

  function knowTypes(names) {
    for (const name of names || []) {
      if (typeof name === "string" && !catalog.names.includes(name)) catalog.names.push(name);
    }
  }

  function typeTitle(type) {
    const flow = catalog.flows.get(type);
    return (flow && flow.title) || `${type} saga`;
  }

  /** A colour for a saga type: by its declared position, so that it is stable. */
  function typeTone(type) {
    let index = catalog.names.indexOf(type);
    if (index < 0) {
      index = 0;
      for (const char of String(type)) index = (index * 31 + char.charCodeAt(0)) % 997;
    }
    return String(index % TYPE_TONES);
  }

  // --- small DOM helpers ------------------------------------------------------------

  /** Create an element. attrs: class, text, dataset-like "data-*", aria-*, on<event>. */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") el.className = value;
      else if (key === "text") el.textContent = String(value);
      else if (key.startsWith("on") && typeof value === "function") {
        el.addEventListener(key.slice(2), value);
      } else el.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  function setText(el, value) {
    const text = value === undefined || value === null ? "" : String(value);
    if (el.textContent !== text) el.textContent = text;
  }

  function setAttr(el, name, value) {
    if (value === undefined || value === null || value === false) {
      if (el.hasAttribute(name)) el.removeAttribute(name);
    } else {
      const text = value === true ? "" : String(value);
      if (el.getAttribute(name) !== text) el.setAttribute(name, text);
    }
  }

  /** Keep `container`'s children in the order of `items`, reusing nodes by key. */
  function reconcile(container, items, keyOf, create, update) {
    const existing = new Map();
    for (const node of Array.from(container.children)) {
      if (node.dataset.key !== undefined) existing.set(node.dataset.key, node);
    }
    const wanted = new Set();
    let cursor = container.firstElementChild;
    // skip non-keyed leading nodes (none expected, but stay safe)
    while (cursor && cursor.dataset.key === undefined) cursor = cursor.nextElementSibling;
    items.forEach((item, index) => {
      const key = String(keyOf(item));
      wanted.add(key);
      let node = existing.get(key);
      const fresh = !node;
      if (fresh) {
        node = create(item, index);
        node.dataset.key = key;
      }
      update(node, item, index, fresh);
      if (node !== cursor) container.insertBefore(node, cursor);
      else cursor = cursor.nextElementSibling;
    });
    for (const [key, node] of existing) if (!wanted.has(key)) node.remove();
  }

  // --- formatting -------------------------------------------------------------------

  const pad = (n, width = 2) => String(n).padStart(width, "0");

  function parseTime(iso) {
    if (!iso) return null;
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? null : d;
  }

  function fmtClock(iso, withMs) {
    const d = parseTime(iso);
    if (!d) return "—";
    const base = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
    return withMs ? `${base}.${pad(d.getMilliseconds(), 3)}` : base;
  }

  function fmtDate(d) {
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  }

  function fmtDateTime(iso) {
    const d = parseTime(iso);
    if (!d) return "—";
    const today = fmtDate(new Date()) === fmtDate(d);
    return today ? fmtClock(iso, false) : `${fmtDate(d)} ${fmtClock(iso, false)}`;
  }

  function fmtDuration(ms) {
    if (ms === undefined || ms === null || Number.isNaN(Number(ms))) return "—";
    const v = Number(ms);
    if (v < 10) return `${v.toFixed(1)} ms`;
    if (v < 1000) return `${Math.round(v)} ms`;
    if (v < 60000) return `${(v / 1000).toFixed(v < 10000 ? 2 : 1)} s`;
    const s = Math.round(v / 1000);
    if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
    return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  }

  function fmtAgo(iso) {
    const d = parseTime(iso);
    if (!d) return "";
    const s = Math.max(0, Math.round((Date.now() - d.getTime()) / 1000));
    if (s < 5) return "just now";
    if (s < 60) return `${s} s ago`;
    if (s < 3600) return `${Math.floor(s / 60)} min ago`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
    return `${Math.floor(s / 86400)} d ago`;
  }

  function fmtOffset(ms) {
    if (ms === null || Number.isNaN(ms)) return "";
    const sign = ms < 0 ? "−" : "+";
    return sign + fmtDuration(Math.abs(ms));
  }

  function shortId(value) {
    const text = String(value);
    return text.length > 13 ? `${text.slice(0, 8)}…` : text;
  }

  function statusBadge(status, testid) {
    return h("span", {
      class: "badge",
      "data-status": status,
      "data-testid": testid,
      title: STATUS_HINT[status] || "",
      text: STATUS_LABEL[status] || status,
    });
  }

  // --- JSON rendered safely, with colours -------------------------------------------

  function jsonNode(value, indent) {
    const pad1 = "  ".repeat(indent + 1);
    const pad0 = "  ".repeat(indent);
    if (value === null) return h("span", { class: "j-null", text: "null" });
    if (typeof value === "string") {
      return h("span", { class: "j-str", text: JSON.stringify(value) });
    }
    if (typeof value === "number") return h("span", { class: "j-num", text: String(value) });
    if (typeof value === "boolean") return h("span", { class: "j-bool", text: String(value) });
    const frag = document.createDocumentFragment();
    if (Array.isArray(value)) {
      if (value.length === 0) return document.createTextNode("[]");
      frag.append("[\n");
      value.forEach((item, i) => {
        frag.append(pad1, jsonNode(item, indent + 1), i < value.length - 1 ? ",\n" : "\n");
      });
      frag.append(`${pad0}]`);
      return frag;
    }
    const keys = Object.keys(value).sort();
    if (keys.length === 0) return document.createTextNode("{}");
    frag.append("{\n");
    keys.forEach((key, i) => {
      frag.append(
        pad1,
        h("span", { class: "j-key", text: JSON.stringify(key) }),
        ": ",
        jsonNode(value[key], indent + 1),
        i < keys.length - 1 ? ",\n" : "\n",
      );
    });
    frag.append(`${pad0}}`);
    return frag;
  }

  function jsonBlock(value, testid) {
    return h("pre", { class: "json", "data-testid": testid, tabindex: "0" }, jsonNode(value, 0));
  }

  async function copyText(text, button) {
    const before = button.textContent;
    try {
      await navigator.clipboard.writeText(text);
      button.textContent = "Copied";
    } catch {
      button.textContent = "Copy failed";
    }
    setTimeout(() => {
      button.textContent = before;
    }, 1200);
  }

  // --- API and polling --------------------------------------------------------------

  class HttpError extends Error {
    constructor(status, body) {
      super((body && body.error) || `HTTP ${status}`);
      this.status = status;
      this.body = body;
    }
  }

  async function getJSON(path, signal) {
    const timeout = new AbortController();
    const timer = setTimeout(() => timeout.abort(), REQUEST_TIMEOUT_MS);
    const onAbort = () => timeout.abort();
    signal.addEventListener("abort", onAbort);
    try {
      const response = await fetch(path, {
        signal: timeout.signal,
        cache: "no-store",
        headers: { Accept: "application/json" },
      });
      let body = null;
      try {
        body = await response.json();
      } catch {
        body = null;
      }
      if (!response.ok) throw new HttpError(response.status, body);
      if (body === null) throw new Error("the API answered with something that is not JSON");
      return body;
    } finally {
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
    }
  }

  const live = {
    root: document.getElementById("live"),
    label: document.getElementById("live-label"),
    time: document.getElementById("live-time"),
    toggle: document.getElementById("live-toggle"),
    banner: document.getElementById("api-error"),
    paused: false,
    updates: 0,
    lastOk: null,
  };

  function setLive(state, error) {
    live.root.dataset.state = state;
    const labels = {
      live: "Live",
      paused: "Paused",
      offline: "Offline",
      connecting: "Connecting…",
    };
    setText(live.label, labels[state]);
    if (state === "live" || state === "paused") {
      setText(live.time, live.lastOk ? `updated ${fmtClock(live.lastOk, false)}` : "");
    }
    if (state === "offline") {
      const since = live.lastOk
        ? ` The page shows what it last received, at ${fmtClock(live.lastOk, false)}.`
        : "";
      live.banner.textContent = "";
      live.banner.append(
        h("strong", { text: "Cannot reach the saga history API." }),
        ` ${error ? `(${error}) ` : ""}Retrying every second…${since}`,
      );
      live.banner.hidden = false;
      document.body.classList.add("is-offline");
    } else {
      live.banner.hidden = true;
      document.body.classList.remove("is-offline");
    }
  }

  const poller = {
    generation: 0,
    timer: null,
    controller: null,
    job: null,
  };

  /** Poll `job.path()` and hand each answer to `job.render`, until the route changes. */
  function startPolling(job) {
    stopPolling();
    poller.job = job;
    const generation = ++poller.generation;
    const tick = async () => {
      poller.timer = null;
      if (generation !== poller.generation) return;
      const controller = new AbortController();
      poller.controller = controller;
      try {
        const data = await getJSON(job.path(), controller.signal);
        if (generation !== poller.generation) return;
        live.lastOk = new Date().toISOString();
        live.updates += 1;
        live.root.dataset.updated = String(live.updates);
        setLive(live.paused ? "paused" : "live");
        job.render(data);
      } catch (error) {
        if (generation !== poller.generation) return;
        if (error instanceof HttpError && error.status < 500) {
          // The API answered: the page is connected, the request was refused.
          live.lastOk = new Date().toISOString();
          live.updates += 1;
          live.root.dataset.updated = String(live.updates);
          setLive(live.paused ? "paused" : "live");
          job.refused(error);
        } else {
          setLive("offline", error && error.name === "AbortError" ? "timed out" : error.message);
        }
      } finally {
        if (generation === poller.generation && !live.paused) {
          poller.timer = setTimeout(tick, document.hidden ? HIDDEN_POLL_MS : POLL_MS);
        }
      }
    };
    poller.tick = tick;
    tick();
  }

  function stopPolling() {
    poller.generation += 1;
    if (poller.timer) clearTimeout(poller.timer);
    if (poller.controller) poller.controller.abort();
    poller.timer = null;
    poller.controller = null;
  }

  function refreshNow() {
    if (!poller.job) return;
    startPolling(poller.job);
  }

  live.toggle.addEventListener("click", () => {
    live.paused = !live.paused;
    live.toggle.setAttribute("aria-pressed", String(live.paused));
    live.toggle.textContent = live.paused ? "Resume" : "Pause";
    if (live.paused) {
      if (poller.timer) clearTimeout(poller.timer);
      poller.timer = null;
      setLive("paused");
    } else {
      refreshNow();
    }
  });

  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && !live.paused) refreshNow();
  });

  // --- declared sagas ---------------------------------------------------------------

  /** An array, whatever the API sent (a missing list is an empty one). */
  function list(value) {
    return Array.isArray(value) ? value : [];
  }

  /** "A", "A or B", "A, B or C". */
  function orList(items, word = "or") {
    const texts = items.map(String);
    if (texts.length <= 1) return texts.join("");
    return `${texts.slice(0, -1).join(", ")} ${word} ${texts[texts.length - 1]}`;
  }

  /** The same, with each item as a node (code, by default). */
  function orNodes(items, make = (text) => h("code", { text })) {
    const nodes = [];
    items.forEach((item, i) => {
      if (i) nodes.push(i === items.length - 1 ? " or " : ", ");
      nodes.push(make(item));
    });
    return nodes;
  }

  function typeBadge(type, testid) {
    const badge = h("span", { class: "type-badge", "data-testid": testid });
    setTypeBadge(badge, type);
    return badge;
  }

  function setTypeBadge(badge, type) {
    setText(badge, type || "");
    setAttr(badge, "data-type", type || null);
    setAttr(badge, "data-tone", type ? typeTone(type) : null);
    setAttr(badge, "title", type ? typeTitle(type) : null);
    badge.hidden = !type;
  }

  /** The page's words that name the sagas: the header's subtitle, the search box. */
  function describeSagas() {
    const flows = catalog.names.map((name) => catalog.flows.get(name)).filter(Boolean);
    if (!flows.length) return;
    setText(
      document.getElementById("brand-sub"),
      `${orList(catalog.names, "and")} sagas · choreographed over RabbitMQ`,
    );
    const fields = Array.from(new Set(flows.map((flow) => flow.id_field).filter(Boolean)));
    if (fields.length) {
      const input = document.getElementById("search-input");
      input.placeholder = `Open a saga by id (${orList(fields)})…`;
      setText(
        document.querySelector("label[for=search-input]"),
        `Open a saga of any type by its id (${orList(fields)})`,
      );
    }
  }

  /** Learn the declared sagas once; the page works without them (it says less). */
  async function loadCatalog() {
    try {
      const data = await getJSON("saga-types", new AbortController().signal);
      for (const flow of list(data.types)) {
        if (flow && typeof flow.saga_type === "string") {
          catalog.flows.set(flow.saga_type, flow);
          knowTypes([flow.saga_type]);
        }
      }
      describeSagas();
      // Badges drawn before the types were known get their declared colour now.
      for (const badge of document.querySelectorAll(".type-badge[data-type]")) {
        setTypeBadge(badge, badge.dataset.type);
      }
      if (currentView && currentView.typesKnown) currentView.typesKnown();
    } catch {
      /* the list's answer names the types too; the page's defaults stand meanwhile */
    }
  }

  // --- routing ----------------------------------------------------------------------

  const main = document.getElementById("main");
  let lastListHash = "#/";

  function parseRoute() {
    const hash = window.location.hash || "#/";
    const sagaMatch = /^#\/sagas\/([^?]+)(?:\?(.*))?$/.exec(hash);
    if (sagaMatch) {
      let id = sagaMatch[1];
      try {
        id = decodeURIComponent(id);
      } catch {
        /* keep it as typed */
      }
      const params = new URLSearchParams(sagaMatch[2] || "");
      return { view: "saga", id, type: params.get("type") || "" };
    }
    const query = hash.includes("?") ? hash.slice(hash.indexOf("?") + 1) : "";
    const params = new URLSearchParams(query);
    const offset = Math.max(0, Number.parseInt(params.get("offset") || "0", 10) || 0);
    const limit = Math.min(
      500,
      Math.max(1, Number.parseInt(params.get("limit") || String(PAGE_SIZE), 10) || PAGE_SIZE),
    );
    return {
      view: "list",
      type: params.get("type") || "",
      status: params.get("status") || "",
      offset,
      limit,
    };
  }

  /** The list's hash: `route` with `changes` applied (a new filter starts at offset 0). */
  function listHash(route, changes = {}) {
    const r = { ...route, ...changes };
    const params = new URLSearchParams();
    if (r.type) params.set("type", r.type);
    if (r.status) params.set("status", r.status);
    if (r.offset) params.set("offset", String(r.offset));
    if (r.limit && r.limit !== PAGE_SIZE) params.set("limit", String(r.limit));
    const query = params.toString();
    return query ? `#/?${query}` : "#/";
  }

  function sagaHash(id, type) {
    const base = `#/sagas/${encodeURIComponent(id)}`;
    return type ? `${base}?type=${encodeURIComponent(type)}` : base;
  }

  let currentView = null;

  function route() {
    const next = parseRoute();
    const sameSaga =
      currentView &&
      currentView.route.view === "saga" &&
      next.view === "saga" &&
      currentView.route.id === next.id &&
      currentView.route.type === next.type;
    if (sameSaga) return;
    if (currentView && currentView.route.view === "list" && next.view === "list") {
      currentView.route = next;
      currentView.changed();
      refreshNow();
      return;
    }
    main.textContent = "";
    currentView = next.view === "saga" ? sagaView(next) : listView(next);
    main.append(currentView.element);
    if (currentView.heading) currentView.heading.focus({ preventScroll: true });
    window.scrollTo(0, 0);
    startPolling(currentView);
  }

  window.addEventListener("hashchange", route);

  document.querySelector("[data-skip]").addEventListener("click", (event) => {
    event.preventDefault();
    main.focus();
  });

  document.querySelector("[data-testid=search-form]").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = document.getElementById("search-input");
    let id = input.value.trim();
    let type = "";
    // A pasted link to a saga page opens that saga (and keeps its type).
    const inUrl = /#\/sagas\/([^?#\s]+)(?:\?type=([^&#\s]+))?/.exec(id);
    if (inUrl) {
      try {
        id = decodeURIComponent(inUrl[1]);
        type = inUrl[2] ? decodeURIComponent(inUrl[2]) : "";
      } catch {
        id = inUrl[1];
      }
    }
    if (!id) {
      input.focus();
      return;
    }
    window.location.hash = sagaHash(id, type);
    input.value = "";
    input.blur();
  });

  document.addEventListener("keydown", (event) => {
    const target = event.target;
    const typing =
      target instanceof HTMLInputElement ||
      target instanceof HTMLTextAreaElement ||
      (target instanceof HTMLElement && target.isContentEditable);
    if (event.key === "/" && !typing && !event.ctrlKey && !event.metaKey && !event.altKey) {
      event.preventDefault();
      document.getElementById("search-input").focus();
    }
  });

  // --- list view --------------------------------------------------------------------

  function listView(initial) {
    const view = { route: initial };
    const chips = {};
    const heading = h("h1", { class: "view-title", tabindex: "-1", text: "Sagas" });
    const chipNav = h("nav", { class: "chips", "aria-label": "Filter sagas by status" });
    for (const status of ["", ...STATUSES]) {
      const key = status || "all";
      const count = h("span", { class: "chip-count", "data-testid": `count-${key}`, text: "–" });
      const chip = h(
        "a",
        {
          class: "chip",
          href: listHash(view.route, { status, offset: 0 }),
          "data-status": key,
          "data-testid": `filter-${key}`,
          title: status ? STATUS_HINT[status] : "Every saga",
        },
        h("span", { class: "chip-dot", "aria-hidden": "true" }),
        h("span", { class: "chip-label", text: status ? STATUS_LABEL[status] : "All" }),
        count,
      );
      chips[key] = { chip, count };
      chipNav.append(chip);
    }

    // The saga types: "All" and one segment per declared type, as the API names them.
    const typeNav = h("nav", {
      class: "segmented",
      "aria-label": "Filter sagas by type",
      "data-testid": "type-filter",
    });
    const typeFilter = h(
      "div",
      { class: "type-filter" },
      h("span", { class: "filter-label", "aria-hidden": "true", text: "Saga type" }),
      typeNav,
    );

    function renderTypes() {
      const names = [...catalog.names];
      const current = view.route.type;
      if (current && !names.includes(current)) names.push(current);
      const key = names.join(" ");
      if (typeNav.dataset.types !== key) {
        typeNav.dataset.types = key;
        typeNav.replaceChildren(
          ...["", ...names].map((type) =>
            h(
              "a",
              {
                class: "segment",
                "data-type": type || "all",
                "data-testid": `type-${type || "all"}`,
              },
              type
                ? h("span", {
                    class: "segment-dot",
                    "data-tone": typeTone(type),
                    "aria-hidden": "true",
                  })
                : null,
              type || "All",
            ),
          ),
        );
      }
      for (const segment of typeNav.children) {
        const type = segment.dataset.type === "all" ? "" : segment.dataset.type;
        const active = type === current;
        segment.href = listHash(view.route, { type, offset: 0 });
        segment.title = type ? typeTitle(type) : "Sagas of every type";
        segment.classList.toggle("active", active);
        setAttr(segment, "aria-current", active ? "true" : null);
      }
    }
    view.typesKnown = renderTypes;

    const tbody = h("tbody", { "data-testid": "saga-rows" });
    const empty = h("p", { class: "empty", "data-testid": "empty-list", hidden: true });
    const refused = h("p", { class: "notice notice-error", role: "alert", hidden: true });
    const caption = h("caption", { class: "visually-hidden", text: "Sagas, newest first" });
    const table = h(
      "table",
      { class: "sagas", "data-testid": "saga-table" },
      caption,
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          h("th", { scope: "col", text: "Saga" }),
          h("th", { scope: "col", text: "Status" }),
          h("th", { scope: "col", text: "Current step" }),
          h("th", { scope: "col", text: "Started" }),
          h("th", { scope: "col", class: "num", text: "Duration" }),
          h("th", { scope: "col", class: "num", text: "Events" }),
          h("th", { scope: "col", text: "Cause / attention" }),
        ),
      ),
      tbody,
    );
    const pageInfo = h("span", {
      class: "page-info",
      "data-testid": "page-info",
      "aria-live": "polite",
    });
    const prev = h("button", {
      type: "button",
      class: "button",
      "data-testid": "page-prev",
      text: "← Newer",
      onclick: () => {
        const r = view.route;
        window.location.hash = listHash(r, { offset: Math.max(0, r.offset - r.limit) });
      },
    });
    const next = h("button", {
      type: "button",
      class: "button",
      "data-testid": "page-next",
      text: "Older →",
      onclick: () => {
        const r = view.route;
        window.location.hash = listHash(r, { offset: r.offset + r.limit });
      },
    });
    const pager = h("div", { class: "pager" }, prev, pageInfo, next);
    const loading = h("p", { class: "loading", text: "Loading sagas…" });

    view.element = h(
      "section",
      { class: "list-view", "aria-labelledby": "list-title" },
      h("div", { class: "view-head" }, heading),
      h("div", { class: "filters" }, chipNav, typeFilter),
      refused,
      loading,
      h("div", { class: "table-wrap" }, table),
      empty,
      pager,
    );
    heading.id = "list-title";
    view.heading = heading;

    let seen = null; // sagas seen so far: rows that appear later flash once

    view.changed = () => {
      const r = view.route;
      seen = null;
      lastListHash = listHash(r);
      for (const [key, { chip }] of Object.entries(chips)) {
        const active = (r.status || "all") === key;
        setAttr(chip, "aria-current", active ? "true" : null);
        chip.classList.toggle("active", active);
        chip.href = listHash(r, { status: key === "all" ? "" : key, offset: 0 });
      }
      renderTypes();
      const what = r.type ? `${r.type[0].toUpperCase()}${r.type.slice(1)} sagas` : "Sagas";
      const status = r.status ? STATUS_LABEL[r.status] || r.status : "";
      setText(heading, status ? `${what} · ${status}` : what);
      document.title = `${status ? `${status} · ` : ""}${what} · Saga history`;
    };
    view.changed();

    view.path = () => {
      const r = view.route;
      const params = new URLSearchParams({ limit: String(r.limit), offset: String(r.offset) });
      if (r.type) params.set("type", r.type);
      if (r.status) params.set("status", r.status);
      return `sagas?${params}`;
    };

    view.refused = (error) => {
      loading.hidden = true;
      refused.textContent = "";
      refused.append(h("strong", { text: "The API refused this view: " }), error.message);
      refused.hidden = false;
    };

    view.render = (data) => {
      loading.hidden = true;
      refused.hidden = true;
      knowTypes(data.types);
      renderTypes();
      const counts = data.counts || {};
      setText(chips.all.count, counts.total ?? 0);
      for (const status of STATUSES) setText(chips[status].count, counts[status] ?? 0);

      const sagas = list(data.sagas);
      const firstRender = seen === null;
      if (firstRender) seen = new Set();
      reconcile(
        tbody,
        sagas,
        (saga) => `${saga.saga_type}/${saga.saga_id}`,
        createRow,
        (row, saga, _i, fresh) => {
          updateRow(row, saga);
          const key = `${saga.saga_type}/${saga.saga_id}`;
          if (fresh && !firstRender && !seen.has(key)) row.classList.add("flash");
          seen.add(key);
        },
      );

      const r = view.route;
      const total = Number(data.total ?? 0);
      empty.hidden = sagas.length > 0;
      table.hidden = sagas.length === 0;
      if (sagas.length === 0) setText(empty, emptyText(r, total));
      const first = sagas.length ? r.offset + 1 : 0;
      const last = r.offset + sagas.length;
      setText(pageInfo, total ? `${first}–${last} of ${total}` : "0 sagas");
      prev.disabled = r.offset <= 0;
      next.disabled = last >= total;
    };

    function emptyText(r, total) {
      if (r.offset > 0 && total > 0) return "Nothing on this page: go back to newer sagas.";
      if (r.status || r.type) {
        const status = r.status ? `${(STATUS_LABEL[r.status] || r.status).toLowerCase()} ` : "";
        return `No ${status}${r.type ? `${r.type} ` : ""}sagas yet. This list updates by itself.`;
      }
      return "No saga recorded yet. Start one (make order SCENARIO=ok, make fare SCENARIO=ok) and it appears here.";
    }

    function createRow(saga) {
      const link = h("a", {
        class: "mono saga-link",
        href: sagaHash(saga.saga_id, saga.saga_type),
      });
      const row = h(
        "tr",
        { "data-testid": "saga-row" },
        h(
          "td",
          { class: "cell-id", "data-label": "Saga" },
          h("span", { class: "cell-id-inner" }, typeBadge(saga.saga_type, "row-type"), link),
        ),
        h("td", { class: "cell-status", "data-label": "Status" }),
        h("td", { class: "cell-step", "data-label": "Current step" }),
        h("td", { class: "cell-started", "data-label": "Started" }),
        h("td", { class: "cell-duration num", "data-label": "Duration" }),
        h("td", { class: "cell-events num", "data-label": "Events" }),
        h("td", { class: "cell-cause", "data-label": "Cause / attention" }),
      );
      row.addEventListener("click", (event) => {
        if (event.target instanceof Element && event.target.closest("a")) return;
        if (window.getSelection && String(window.getSelection()).length > 0) return;
        window.location.hash = sagaHash(saga.saga_id, saga.saga_type);
      });
      return row;
    }

    function updateRow(row, saga) {
      setAttr(row, "data-saga-id", saga.saga_id);
      setAttr(row, "data-saga-type", saga.saga_type);
      setAttr(row, "data-status", saga.status);
      const [idCell, statusCell, stepCell, startedCell, durationCell, eventsCell, causeCell] =
        row.children;
      setTypeBadge(idCell.querySelector(".type-badge"), saga.saga_type);
      const link = idCell.querySelector("a");
      setText(link, saga.saga_id);
      setAttr(link, "aria-label", `${typeTitle(saga.saga_type)} ${saga.saga_id}`);
      if (statusCell.dataset.status !== saga.status) {
        statusCell.dataset.status = saga.status;
        statusCell.textContent = "";
        statusCell.append(statusBadge(saga.status, "row-status"));
      }
      setText(stepCell, saga.current_step || "—");
      stepCell.classList.toggle("muted", !saga.current_step);
      if (startedCell.dataset.at !== String(saga.started_at)) {
        startedCell.dataset.at = String(saga.started_at);
        startedCell.replaceChildren(
          h("time", {
            datetime: saga.started_at || "",
            title: saga.started_at || "",
            text: fmtDateTime(saga.started_at),
          }),
          h("span", { class: "ago" }),
        );
      }
      setText(startedCell.lastChild, fmtAgo(saga.started_at));
      setText(durationCell, fmtDuration(saga.duration_ms));
      setText(eventsCell, saga.event_count ?? "—");
      const waiting = waitsFor(saga);
      const causeKey = JSON.stringify([saga.attention, saga.cause, waiting]);
      if (causeCell.dataset.key !== causeKey) {
        causeCell.dataset.key = causeKey;
        causeCell.replaceChildren();
        if (saga.attention) {
          causeCell.append(
            h(
              "span",
              { class: "attention-text", "data-testid": "row-attention" },
              h("span", { "aria-hidden": "true", text: "⚠ " }),
              saga.attention,
            ),
          );
        }
        if (saga.cause) {
          causeCell.append(
            h(
              "span",
              { class: "cause-text", "data-testid": "row-cause" },
              h("span", { class: "cause-label", text: "cause " }),
              saga.cause,
            ),
          );
        }
        if (waiting.length) {
          causeCell.append(
            h(
              "span",
              { class: "expect-text", "data-testid": "row-expecting" },
              h("span", { class: "cause-label", text: "waiting for " }),
              orList(waiting),
            ),
          );
        }
        if (!saga.attention && !saga.cause && !waiting.length)
          causeCell.append(h("span", { class: "muted", text: "—" }));
      }
    }

    return view;
  }

  /** The events a saga that has not ended waits for (none once it has). */
  function waitsFor(saga) {
    if (saga.status !== "running" && saga.status !== "stuck") return [];
    return list(saga.expecting).map(String);
  }

  // --- saga view --------------------------------------------------------------------

  function sagaView(initialRoute) {
    const view = { route: initialRoute };
    const id = initialRoute.id;
    // The type asked for in the URL; else the one found, kept so the view stays on it.
    let type = initialRoute.type;
    document.title = `Saga ${shortId(id)} · Saga history`;

    const back = h("a", { class: "back", href: lastListHash, text: "← All sagas" });
    const kicker = h("span", { class: "title-kicker", text: "Saga " });
    const heading = h(
      "h1",
      { class: "view-title saga-title", tabindex: "-1" },
      kicker,
      h("span", { class: "mono", "data-testid": "saga-id", text: id }),
    );
    const copyId = h("button", {
      type: "button",
      class: "button button-small",
      text: "Copy id",
      onclick: (event) => copyText(id, event.currentTarget),
    });
    const statusSlot = h("span", { class: "status-slot" });
    const sagaType = typeBadge(type, "saga-type");
    const meta = h("dl", { class: "meta" });
    const expecting = h("div", {
      class: "callout callout-expecting",
      "data-testid": "saga-expecting",
      role: "note",
      hidden: true,
    });
    const attention = h("div", {
      class: "callout callout-attention",
      "data-testid": "saga-attention",
      role: "note",
      hidden: true,
    });
    const cause = h("div", {
      class: "callout callout-cause",
      "data-testid": "saga-cause",
      hidden: true,
    });
    const notFound = h(
      "div",
      { class: "notice", "data-testid": "saga-not-found", hidden: true },
      h("strong", {
        text: `No ${type ? `${type} ` : ""}saga with this id has been recorded (yet).`,
      }),
      " This page keeps looking and shows the saga as soon as its first event arrives. ",
      h("a", { href: "#/", text: "Back to all sagas" }),
    );
    const choice = h("div", {
      class: "notice notice-choice",
      "data-testid": "saga-choice",
      hidden: true,
    });
    const loading = h("p", { class: "loading", text: "Loading the saga…" });

    let flow = null; // the drawing, made from the first answer's flow
    const flowSlot = h("div", { class: "flow-slot" });
    const timelineList = h("ol", { class: "timeline", "data-testid": "timeline" });
    const focusNote = h("p", { class: "focus-note", hidden: true });
    const expandAll = h("button", {
      type: "button",
      class: "button button-small",
      "data-testid": "expand-all",
      text: "Expand all",
      onclick: () => setAllOpen(true),
    });
    const collapseAll = h("button", {
      type: "button",
      class: "button button-small",
      "data-testid": "collapse-all",
      text: "Collapse all",
      onclick: () => setAllOpen(false),
    });
    const eventCount = h("span", { class: "section-count" });

    const body = h(
      "div",
      { class: "saga-body", hidden: true },
      h(
        "section",
        { class: "panel flow-panel", "aria-labelledby": "flow-title" },
        h("h2", { id: "flow-title", class: "panel-title", text: "Flow" }),
        h(
          "p",
          { class: "panel-hint" },
          "Forward steps on top, each compensation beneath the step it undoes. Select a step to pick out its events.",
        ),
        flowSlot,
        legend(),
      ),
      h(
        "section",
        { class: "panel timeline-panel", "aria-labelledby": "timeline-title" },
        h(
          "div",
          { class: "panel-head" },
          h("h2", { id: "timeline-title", class: "panel-title" }, "Timeline ", eventCount),
          h("div", { class: "panel-actions" }, expandAll, collapseAll),
        ),
        focusNote,
        timelineList,
      ),
    );

    view.element = h(
      "article",
      { class: "saga-view", "data-testid": "saga-view", "data-saga-id": id },
      h("div", { class: "crumbs" }, back),
      h(
        "header",
        { class: "saga-head" },
        h("div", { class: "saga-head-top" }, heading, statusSlot, sagaType, copyId),
        meta,
        expecting,
        attention,
        cause,
      ),
      loading,
      notFound,
      choice,
      body,
    );
    view.heading = heading;
    view.changed = () => {};
    view.path = () =>
      `sagas/${encodeURIComponent(id)}${type ? `?type=${encodeURIComponent(type)}` : ""}`;

    let focusStep = null;
    let sagaStart = null;
    let lastStatus = null;

    function setAllOpen(open) {
      for (const details of timelineList.querySelectorAll("details")) details.open = open;
    }

    function toggleFocus(name) {
      focusStep = focusStep === name ? null : name;
      applyFocus();
    }

    function applyFocus() {
      if (flow) flow.setFocus(focusStep);
      let first = null;
      for (const item of timelineList.children) {
        const steps = (item.dataset.steps || "").split(" ");
        const match = !focusStep || steps.includes(focusStep);
        item.classList.toggle("dimmed", !match);
        item.classList.toggle("focused", Boolean(focusStep) && match);
        if (focusStep && match && !first) first = item;
      }
      focusNote.textContent = "";
      if (focusStep) {
        focusNote.append(
          "Picking out the events of ",
          h("strong", { text: focusStep }),
          ". ",
          h("button", {
            type: "button",
            class: "link-button",
            text: "Show all events equally",
            onclick: () => toggleFocus(focusStep),
          }),
        );
        focusNote.hidden = false;
        if (first) first.scrollIntoView({ block: "nearest", behavior: "smooth" });
      } else {
        focusNote.hidden = true;
      }
    }

    view.refused = (error) => {
      loading.hidden = true;
      body.hidden = true;
      statusSlot.textContent = "";
      lastStatus = null;
      const types = error.body && list(error.body.types);
      if (error.status === 409 && types && types.length) {
        notFound.hidden = true;
        showChoice(types);
      } else if (error.status === 404) {
        choice.hidden = true;
        notFound.hidden = false;
      } else {
        choice.hidden = true;
        notFound.hidden = false;
        setText(notFound.firstChild, `The API refused this saga: ${error.message}`);
      }
    };

    /** Sagas of several types have this id: the user says which (the URL then has it). */
    function showChoice(types) {
      const key = types.join(" ");
      choice.hidden = false;
      if (choice.dataset.types === key) return;
      choice.dataset.types = key;
      choice.replaceChildren(
        h("strong", { text: `${types.length} sagas of different types have this id.` }),
        " Open the ",
        ...orNodes(types, (name) =>
          h(
            "a",
            { href: sagaHash(id, name), "data-testid": `choose-${name}`, class: "choice-link" },
            typeBadge(name),
            h("span", { class: "choice-title", text: typeTitle(name) }),
          ),
        ),
        ".",
      );
    }

    view.render = (data) => {
      loading.hidden = true;
      notFound.hidden = true;
      choice.hidden = true;
      body.hidden = false;
      const saga = data.saga || {};
      const timeline = causalOrder(list(data.timeline));
      type = type || saga.saga_type || "";
      setTypeBadge(sagaType, saga.saga_type || type);
      if (data.flow && (!flow || flow.sagaType !== data.flow.saga_type)) {
        flow = buildFlow(data.flow, (name) => toggleFocus(name));
        flowSlot.replaceChildren(flow.element);
        setText(kicker, `${data.flow.title || typeTitle(data.flow.saga_type)} `);
        timelineList.replaceChildren(); // its events are read through the flow
      }

      if (lastStatus !== saga.status) {
        statusSlot.textContent = "";
        statusSlot.append(statusBadge(saga.status, "saga-status"));
        lastStatus = saga.status;
        document.title = `Saga ${shortId(id)} · ${STATUS_LABEL[saga.status] || saga.status} · Saga history`;
      }
      renderMeta(saga);
      renderExpecting(saga);

      attention.hidden = !saga.attention;
      if (saga.attention) {
        const text = `Needs attention: ${saga.attention}`;
        if (attention.dataset.text !== text) {
          attention.dataset.text = text;
          attention.textContent = "";
          attention.append(
            h("span", { class: "callout-icon", "aria-hidden": "true", text: "⚠" }),
            h("span", {}, h("strong", { text: "Needs attention: " }), saga.attention),
          );
        }
      }
      const causeText = saga.cause || saga.error;
      cause.hidden = !causeText;
      if (causeText) {
        const parts = [];
        if (saga.cause) parts.push(["Cause", saga.cause]);
        if (saga.error) parts.push(["Saga error", saga.error]);
        const key = JSON.stringify(parts);
        if (cause.dataset.text !== key) {
          cause.dataset.text = key;
          cause.textContent = "";
          for (const [label, value] of parts) {
            cause.append(
              h(
                "span",
                { class: "cause-item" },
                h("span", { class: "cause-label", text: `${label} ` }),
                h("code", { text: value }),
              ),
            );
          }
        }
      }

      if (flow) flow.update(saga);

      sagaStart = parseTime(saga.started_at);
      setText(eventCount, `(${timeline.length})`);
      const typeById = new Map(timeline.map((event) => [event.message_id, event.type]));
      reconcile(
        timelineList,
        timeline,
        (event) => event.message_id,
        (event) => createEvent(event, typeById),
        (item, event) => {
          const at = parseTime(event.occurred_at || event.received_at);
          setText(
            item.querySelector(".event-offset"),
            at && sagaStart ? fmtOffset(at.getTime() - sagaStart.getTime()) : "",
          );
        },
      );
      applyFocus();
    };

    /** What a saga that has not ended waits for: most useful when it is stuck. */
    function renderExpecting(saga) {
      const waiting = waitsFor(saga);
      expecting.hidden = waiting.length === 0;
      setAttr(expecting, "data-status", saga.status);
      if (!waiting.length) return;
      const step = saga.current_step || "";
      const service = (flow && flow.serviceOf(step)) || "";
      const key = JSON.stringify([saga.status, waiting, step, service]);
      if (expecting.dataset.key !== key) {
        expecting.dataset.key = key;
        const stuck = saga.status === "stuck";
        expecting.replaceChildren(
          h("span", { class: "callout-icon expect-icon", "aria-hidden": "true" }),
          h(
            "span",
            { class: "callout-text" },
            stuck ? h("strong", { text: "Stuck: " }) : null,
            stuck ? h("span", { class: "expect-quiet" }) : null,
            h("strong", { text: stuck ? "It waits for " : "Waiting for " }),
            ...orNodes(waiting),
            step
              ? h(
                  "span",
                  { class: "expect-from" },
                  ` · the outcome of ${step}${service ? ` (${service} service)` : ""}`,
                )
              : null,
          ),
        );
      }
      const quiet = expecting.querySelector(".expect-quiet");
      if (quiet) {
        setText(
          quiet,
          `no event since ${fmtClock(saga.last_event_at, false)} (${fmtAgo(saga.last_event_at)}), longer than the saga deadline. `,
        );
      }
    }

    function renderMeta(saga) {
      const rows = [
        ["Current step", saga.current_step || "—"],
        [
          "Started",
          saga.started_at ? `${fmtDateTime(saga.started_at)} (${fmtAgo(saga.started_at)})` : "—",
        ],
        [
          "Ended",
          saga.ended_at
            ? fmtDateTime(saga.ended_at)
            : saga.status === "running" || saga.status === "stuck"
              ? "not yet"
              : "—",
        ],
        ["Duration", fmtDuration(saga.duration_ms)],
        [
          "Last event",
          saga.last_event_at
            ? `${fmtClock(saga.last_event_at, true)} (${fmtAgo(saga.last_event_at)})`
            : "—",
        ],
        ["Events", saga.event_count ?? "—"],
      ];
      if (meta.children.length !== rows.length) {
        meta.textContent = "";
        for (const [label] of rows) {
          meta.append(
            h(
              "div",
              { class: "meta-item" },
              h("dt", { text: label }),
              h("dd", { "data-testid": `meta-${label.toLowerCase().replace(/\s+/g, "-")}` }),
            ),
          );
        }
      }
      rows.forEach(([, value], i) => setText(meta.children[i].lastChild, value));
    }

    function createEvent(event, typeById) {
      const payload = event.payload && typeof event.payload === "object" ? event.payload : {};
      // A step's events: those that start it or end it; a compensation's failure and a
      // parked message also name their step.
      const steps = new Set(flow ? flow.stepsOf(event.type) : []);
      const named = payload.step ? String(payload.step) : "";
      if (named && flow && flow.hasStep(named)) steps.add(named);
      const tone = flow ? flow.toneOf(event.type) : eventTone(event.type, null);
      const when = event.occurred_at || event.received_at;
      const summaryParts = summarize(event.type, payload);
      const summary = h(
        "summary",
        { class: "event-summary", "data-testid": "event-toggle" },
        h("span", { class: "event-marker", "aria-hidden": "true" }),
        h(
          "span",
          { class: "event-when" },
          h("time", { datetime: when || "", title: when || "", text: fmtClock(when, true) }),
          h("span", { class: "event-offset" }),
          event.occurred_at
            ? null
            : h("span", {
                class: "event-recv",
                title:
                  "This message has no occurred_at: it is dated when the recorder received it.",
                text: "received",
              }),
        ),
        h(
          "span",
          { class: "event-main" },
          h(
            "span",
            { class: "event-head" },
            h("span", { class: "event-type" }, camelBreaks(event.type || "(no type)")),
            h("span", {
              class: "producer",
              "data-producer": event.producer || "",
              text: event.producer || "?",
            }),
          ),
          h(
            "span",
            { class: "event-brief", "data-testid": "event-brief" },
            summaryParts.map(([key, value], i) =>
              h(
                "span",
                { class: ERROR_FIELDS.has(key) ? "brief-item brief-error" : "brief-item" },
                i ? " · " : "",
                h("span", { class: "brief-key", text: `${key.replace(/_/g, " ")} ` }),
                String(value),
              ),
            ),
          ),
        ),
        h("span", { class: "event-chevron", "aria-hidden": "true" }),
      );
      const facts = h("dl", { class: "event-facts" });
      const fact = (label, value, extra) => {
        facts.append(
          h("dt", { text: label }),
          h(
            "dd",
            {},
            value === null || value === undefined
              ? h("span", { class: "muted", text: "—" })
              : h("code", { text: String(value) }),
            extra || null,
          ),
        );
      };
      fact("message_id", event.message_id);
      const causeType = event.causation_id ? typeById.get(event.causation_id) : null;
      fact(
        "causation_id",
        event.causation_id,
        causeType
          ? h("button", {
              type: "button",
              class: "link-button",
              text: `← ${causeType}`,
              title: "Show the event that caused this one",
              onclick: () => revealEvent(event.causation_id),
            })
          : null,
      );
      fact("routing_key", event.routing_key);
      fact("occurred_at", event.occurred_at);
      fact("received_at", event.received_at);
      const payloadText = JSON.stringify(event.payload, null, 2);
      const copy = h("button", {
        type: "button",
        class: "button button-small",
        text: "Copy payload",
        onclick: (e) => copyText(payloadText, e.currentTarget),
      });
      const details = h(
        "details",
        {},
        summary,
        h(
          "div",
          { class: "event-body", "data-testid": "event-body" },
          facts,
          h("div", { class: "json-head" }, h("h3", { text: "Payload" }), copy),
          jsonBlock(event.payload ?? null, "event-payload"),
          h("h3", { text: "Headers" }),
          jsonBlock(event.headers ?? {}, "event-headers"),
        ),
      );
      return h(
        "li",
        {
          class: `event tone-${tone}`,
          "data-testid": "timeline-event",
          "data-type": event.type || "",
          "data-message-id": event.message_id || "",
          "data-steps": Array.from(steps).join(" "),
        },
        details,
      );
    }

    function revealEvent(messageId) {
      for (const item of timelineList.children) {
        if (item.dataset.messageId === messageId) {
          const details = item.querySelector("details");
          if (details) details.open = true;
          item.scrollIntoView({ block: "center", behavior: "smooth" });
          item.classList.remove("flash");
          void item.offsetWidth; // restart the animation
          item.classList.add("flash");
          const summary = item.querySelector("summary");
          if (summary) summary.focus({ preventScroll: true });
          return;
        }
      }
    }

    return view;
  }

  /** Events in time order, but never before the event that caused them (a client's
   * starting JSON has no occurred_at, so the recorder can only date it by its reception). */
  function causalOrder(events) {
    const ids = new Set(events.map((event) => event.message_id));
    const placed = new Set();
    const remaining = events.slice();
    const ordered = [];
    while (remaining.length) {
      let index = remaining.findIndex(
        (event) =>
          !event.causation_id || !ids.has(event.causation_id) || placed.has(event.causation_id),
      );
      if (index < 0) index = 0;
      const [event] = remaining.splice(index, 1);
      ordered.push(event);
      placed.add(event.message_id);
    }
    return ordered;
  }

  /** An event's colour in the timeline: `tones` (from the flow) first, then its name. */
  function eventTone(type, tones) {
    const text = String(type || "");
    if (tones && tones.has(text)) return tones.get(text);
    if (text === "MessageParked") return "attention";
    if (/Rejected$/.test(text)) return "terminal-failed";
    if (/(Failed|Cancelled)$/.test(text)) return "failed";
    return "normal";
  }

  /** Tones the flow declares: each step's failure, each compensation's failure, the
   * cancellation, the rejection and the terminal events. */
  function tonesOf(flow) {
    const tones = new Map();
    for (const step of [...list(flow.forward), ...list(flow.compensations)]) {
      for (const type of list(step.failed)) tones.set(type, "failed");
      if (step.compensation_failed) tones.set(step.compensation_failed, "attention");
    }
    if (flow.cancelled) tones.set(flow.cancelled, "failed");
    if (flow.rejected) tones.set(flow.rejected, "terminal-failed");
    const terminal = flow.terminal || {};
    if (terminal.failed) tones.set(terminal.failed, "terminal-failed");
    if (terminal.succeeded) tones.set(terminal.succeeded, "success");
    return tones;
  }

  function summarize(type, payload) {
    const parts = [];
    if (Array.isArray(payload.items)) {
      parts.push(["items", payload.items.length]);
      if (payload.customer_id) parts.push(["customer", shortId(payload.customer_id)]);
    }
    for (const key of SUMMARY_FIELDS) {
      const value = payload[key];
      if (value === undefined || value === null || value === "") continue;
      if (key === "attempts" && Number(value) <= 1) continue;
      if (Array.isArray(value)) {
        if (value.length) parts.push([key, value.join(", ")]);
      } else if (typeof value === "object") continue;
      else parts.push([key, SHORT_FIELDS.has(key) ? shortId(value) : value]);
    }
    return parts;
  }

  function legend() {
    return h(
      "div",
      { class: "legend" },
      h(
        "ul",
        { class: "legend-list", "aria-label": "Step colours" },
        Object.keys(STEP_LABEL).map((status) =>
          h(
            "li",
            { "data-status": status },
            h("span", { class: "legend-swatch", "aria-hidden": "true" }),
            STEP_LABEL[status],
          ),
        ),
      ),
      h(
        "ul",
        { class: "legend-list legend-edges", "aria-label": "Arrows" },
        h("li", {}, h("span", { class: "legend-line", "aria-hidden": "true" }), "taken"),
        h(
          "li",
          { "data-edge-kind": "fails" },
          h("span", { class: "legend-line", "aria-hidden": "true" }),
          "failure taken",
        ),
        h(
          "li",
          { "data-taken": "false" },
          h("span", { class: "legend-line", "aria-hidden": "true" }),
          "not taken",
        ),
      ),
    );
  }

  /** "UpdateOrderStatus" with line-break opportunities between its words. */
  function camelBreaks(text) {
    const parts = String(text).split(/(?<=[a-z])(?=[A-Z])/);
    const nodes = [];
    parts.forEach((part, i) => {
      if (i) nodes.push(document.createElement("wbr"));
      nodes.push(part);
    });
    return nodes;
  }

  // --- the flow graph ---------------------------------------------------------------

  const SVG_NS = "http://www.w3.org/2000/svg";
  /** Arrow geometry, in CSS pixels. */
  const HEAD_LENGTH = 9;
  const HEAD_HALF_WIDTH = 5;
  const CORNER = 8;
  const LANE_STEP = 16;

  function svgNode(tag, attrs) {
    const el = document.createElementNS(SVG_NS, tag);
    for (const [key, value] of Object.entries(attrs || {})) el.setAttribute(key, String(value));
    return el;
  }

  function nearestFree(used, wanted) {
    for (let d = 0; ; d += 1) {
      if (!used.has(wanted + d)) return wanted + d;
      if (d && wanted - d >= 1 && !used.has(wanted - d)) return wanted - d;
    }
  }

  /**
   * Where each node of a flow goes, on a grid of columns and two rows:
   *   column 0: Start (top row) and Failed (bottom row); 1..n: the forward steps in
   *   order; n + 1: Succeeded. Each compensation goes beneath the step it undoes (the
   *   nearest free column if that one is taken).
   * Each edge gets a route: "straight" along a row, "around" a row when boxes stand in the
   * way (through a lane above the top row or below the bottom one), "vertical" straight
   * between the rows, or "elbow": out of its box, across the gap between the rows and
   * into the other. Routes that share a gap or a lane and would overlap get lanes of
   * their own.
   */
  function planFlow(flow) {
    const forward = list(flow.forward);
    const n = forward.length;
    const nodes = new Map();
    nodes.set("start", { col: 0, row: "top" });
    forward.forEach((step, i) => nodes.set(step.name, { col: i + 1, row: "top", step }));
    nodes.set("succeeded", { col: n + 1, row: "top" });
    nodes.set("failed", { col: 0, row: "bottom" });
    const bottom = new Set([0]);
    for (const step of list(flow.compensations)) {
      if (nodes.has(step.name)) continue;
      const under = nodes.get(step.compensates);
      const wanted = under && under.step && under.row === "top" ? under.col : Math.max(n, 1);
      const col = nearestFree(bottom, wanted);
      bottom.add(col);
      nodes.set(step.name, { col, row: "bottom", step });
    }
    const columns = Math.max(n + 2, ...Array.from(bottom, (col) => col + 1));
    const wide = new Set(Array.from(nodes.values(), (node) => (node.step ? node.col : -1)));

    const routeOf = (from, to) => {
      if (from.row !== to.row) return from.col === to.col ? "vertical" : "elbow";
      const lo = Math.min(from.col, to.col);
      const hi = Math.max(from.col, to.col);
      const blocked = Array.from(nodes.values()).some(
        (node) => node.row === from.row && node.col > lo && node.col < hi,
      );
      return blocked ? "around" : "straight";
    };
    const edges = [];
    for (const edge of list(flow.edges)) {
      const key = `${edge.from}-${edge.to}`;
      const from = nodes.get(edge.from);
      const to = nodes.get(edge.to);
      if (!from || !to || edges.some((known) => known.key === key)) continue;
      const route = routeOf(from, to);
      const outside = from.row === "top" ? "above" : "below";
      edges.push({
        key,
        kind: edge.kind || "forward",
        from: edge.from,
        to: edge.to,
        route,
        span: [Math.min(from.col, to.col), Math.max(from.col, to.col)],
        band: route === "elbow" ? "gap" : route === "around" ? outside : null,
      });
    }
    const lanes = { gap: 0, above: 0, below: 0 };
    for (const band of Object.keys(lanes)) {
      const taken = []; // per lane: the column spans already running through it
      for (const edge of edges.filter((e) => e.band === band)) {
        const [lo, hi] = edge.span;
        let lane = taken.findIndex((spans) =>
          spans.every(([a, b]) => Math.max(a, lo) >= Math.min(b, hi)),
        );
        if (lane < 0) lane = taken.push([]) - 1;
        taken[lane].push(edge.span);
        edge.lane = lane;
      }
      lanes[band] = taken.length;
    }
    return { nodes, columns, wide, edges, lanes };
  }

  /** A polyline through `points` with rounded corners, as SVG path data. */
  function roundedPath(points) {
    const fmt = (value) => String(Math.round(value * 10) / 10);
    const at = ([x, y]) => `${fmt(x)} ${fmt(y)}`;
    const towards = (from, to, length) => {
      const d = Math.hypot(to[0] - from[0], to[1] - from[1]) || 1;
      return [
        from[0] + ((to[0] - from[0]) * length) / d,
        from[1] + ((to[1] - from[1]) * length) / d,
      ];
    };
    let path = `M ${at(points[0])}`;
    for (let i = 1; i < points.length - 1; i += 1) {
      const [before, corner, after] = [points[i - 1], points[i], points[i + 1]];
      const r = Math.min(
        CORNER,
        Math.hypot(corner[0] - before[0], corner[1] - before[1]) / 2,
        Math.hypot(after[0] - corner[0], after[1] - corner[1]) / 2,
      );
      const [enter, leave] = [towards(corner, before, r), towards(corner, after, r)];
      path += ` L ${at(enter)} Q ${at(corner)} ${at(leave)}`;
    }
    return `${path} L ${at(points[points.length - 1])}`;
  }

  /** The line (shortened for its head) and the head of an arrow along `points`. */
  function arrow(points) {
    const tip = points[points.length - 1];
    const from = points[points.length - 2];
    const d = Math.hypot(tip[0] - from[0], tip[1] - from[1]) || 1;
    const [ux, uy] = [(tip[0] - from[0]) / d, (tip[1] - from[1]) / d];
    const end = [tip[0] - ux * 1.5, tip[1] - uy * 1.5]; // a hair off the box it points at
    const base = [end[0] - ux * HEAD_LENGTH, end[1] - uy * HEAD_LENGTH];
    const line = [...points.slice(0, -1), [base[0] + ux, base[1] + uy]];
    const fmt = (value) => String(Math.round(value * 10) / 10);
    const head =
      `M ${fmt(end[0])} ${fmt(end[1])} ` +
      `L ${fmt(base[0] - uy * HEAD_HALF_WIDTH)} ${fmt(base[1] + ux * HEAD_HALF_WIDTH)} ` +
      `L ${fmt(base[0] + uy * HEAD_HALF_WIDTH)} ${fmt(base[1] - ux * HEAD_HALF_WIDTH)} Z`;
    return { line: roundedPath(line), head };
  }

  /**
   * The flow of any declared saga (the API's `flow`), drawn as a grid of boxes with the
   * arrows in an SVG layer above it, measured from the boxes themselves and redrawn when
   * they change size. `update(saga)` colours the steps and marks the edges taken.
   */
  function buildFlow(flow, onSelect) {
    const plan = planFlow(flow);
    const stepsByName = new Map();
    for (const step of [...list(flow.forward), ...list(flow.compensations)]) {
      if (step && step.name && !stepsByName.has(step.name)) stepsByName.set(step.name, step);
    }
    // Which steps an event belongs to: those it starts or ends.
    const eventSteps = new Map();
    for (const step of stepsByName.values()) {
      for (const type of [...list(step.on), ...list(step.expects)]) {
        if (!eventSteps.has(type)) eventSteps.set(type, []);
        if (!eventSteps.get(type).includes(step.name)) eventSteps.get(type).push(step.name);
      }
    }
    const tones = tonesOf(flow);
    const terminalEvents = flow.terminal || {};

    const grid = h("div", {
      class: "flow",
      "data-testid": "flow",
      "data-saga-type": flow.saga_type || "",
      role: "group",
      "aria-label": `${flow.title || "Saga"} flow`,
    });
    const rows = {};
    const tracks = [];
    const band = (lanes) => `calc(${Math.max(lanes, 1)} * ${LANE_STEP}px + 8px)`;
    if (plan.lanes.above) rows.above = tracks.push(band(plan.lanes.above));
    rows.top = tracks.push("auto");
    rows.gap = tracks.push(
      plan.lanes.gap > 1
        ? `calc(var(--flow-fall) + ${plan.lanes.gap - 1} * ${LANE_STEP}px)`
        : "var(--flow-fall)",
    );
    rows.bottom = tracks.push("auto");
    if (plan.lanes.below) rows.below = tracks.push(band(plan.lanes.below));
    const columns = [];
    for (let col = 0; col < plan.columns; col += 1) {
      if (col) columns.push("var(--flow-gap)");
      columns.push(plan.wide.has(col) ? "minmax(var(--flow-step), 1fr)" : "var(--flow-terminal)");
    }
    const wideCount = Array.from(plan.wide).filter((col) => col >= 0).length;
    // Set through the CSSOM (allowed under a style-src CSP without 'unsafe-inline').
    grid.style.gridTemplateColumns = columns.join(" ");
    grid.style.gridTemplateRows = tracks.join(" ");
    grid.style.minWidth =
      `calc(${plan.columns - wideCount} * var(--flow-terminal) + ` +
      `${wideCount} * var(--flow-step) + ${plan.columns - 1} * var(--flow-gap))`;

    const overlay = svgNode("svg", {
      class: "flow-edges",
      "aria-hidden": "true",
      focusable: "false",
    });
    grid.append(overlay);
    const bands = {};
    for (const name of ["above", "gap", "below"]) {
      if (!rows[name]) continue;
      const el = h("div", { class: "flow-band", "aria-hidden": "true" });
      el.style.gridRow = String(rows[name]);
      el.style.gridColumn = "1 / -1";
      bands[name] = el;
      grid.append(el);
    }

    const boxes = {};
    const place = (el, key) => {
      const node = plan.nodes.get(key);
      el.style.gridColumn = String(node.col * 2 + 1);
      el.style.gridRow = String(rows[node.row]);
      grid.append(el);
      boxes[key] = el;
    };
    const terminal = (key, label, title) => {
      place(
        h(
          "div",
          {
            class: `terminal terminal-${key}`,
            "data-testid": `terminal-${key}`,
            "data-reached": "false",
            title,
          },
          h("span", { class: "terminal-label", text: label }),
        ),
        key,
      );
    };
    terminal("start", "Start", "The saga's first message");
    terminal(
      "succeeded",
      "Succeeded",
      terminalEvents.succeeded ? `Ends with ${terminalEvents.succeeded}` : "",
    );
    terminal(
      "failed",
      "Failed",
      terminalEvents.failed ? `Ends with ${terminalEvents.failed}` : "",
    );
    for (const step of stepsByName.values()) {
      if (!plan.nodes.has(step.name)) continue;
      const kind = step.kind === "compensation" ? "compensation" : "forward";
      place(
        h(
          "button",
          {
            type: "button",
            class: `step step-${kind}`,
            "data-testid": `step-${step.name}`,
            "data-step": step.name,
            "data-kind": kind,
            "data-status": "pending",
            "aria-pressed": "false",
            onclick: () => onSelect(step.name),
          },
          h("span", { class: "step-name" }, camelBreaks(step.name)),
          h("span", {
            class: "step-service",
            "data-testid": "step-service",
            text: `${step.service || "?"} · ${kind}`,
          }),
          h(
            "span",
            { class: "step-state" },
            h("span", { class: "step-icon", "aria-hidden": "true" }),
            h("span", { class: "step-status", "data-testid": "step-status" }),
            h("span", { class: "step-duration", "data-testid": "step-duration" }),
          ),
          h("span", { class: "step-error", "data-testid": "step-error", hidden: true }),
        ),
        step.name,
      );
    }

    const edges = plan.edges.map((edge) => {
      const g = svgNode("g", {
        class: `edge edge-${edge.kind}`,
        "data-edge": edge.key,
        "data-kind": edge.kind,
        "data-route": edge.route,
        "data-taken": "false",
      });
      const line = svgNode("path", { class: "edge-line" });
      const head = svgNode("path", { class: "edge-head" });
      g.append(line, head);
      let label = null;
      if (edge.kind === "fails") {
        label = svgNode("text", { class: "edge-label", "dominant-baseline": "middle" });
        label.textContent = "fails";
        g.append(label);
      }
      overlay.append(g);
      return { ...edge, g, line, head, label };
    });

    const rect = (el) => ({
      x: el.offsetLeft,
      y: el.offsetTop,
      w: el.offsetWidth,
      h: el.offsetHeight,
    });
    const lanes = (name, lane) => {
      const b = rect(bands[name]);
      if (name === "gap") return b.y + (b.h * (lane + 1)) / (plan.lanes.gap + 1);
      const offset = 8 + (lane + 0.5) * LANE_STEP;
      return name === "above" ? b.y + b.h - offset : b.y + offset;
    };

    function pointsOf(edge) {
      const s = rect(boxes[edge.from]);
      const t = rect(boxes[edge.to]);
      const from = plan.nodes.get(edge.from);
      const cx = (r) => r.x + r.w / 2;
      const dir = Math.sign(cx(t) - cx(s)) || 1;
      const aside = (r) => Math.min(r.w * 0.25, 34);
      if (edge.route === "straight") {
        const y = s.y + s.h / 2;
        return dir > 0 ? [[s.x + s.w, y], [t.x, y]] : [[s.x, y], [t.x + t.w, y]];
      }
      if (edge.route === "vertical") {
        const x = cx(s);
        return from.row === "top" ? [[x, s.y + s.h], [x, t.y]] : [[x, s.y], [x, t.y + t.h]];
      }
      // elbow and around: out of one box, along a lane, into the other
      const sx = cx(s) + dir * aside(s);
      const tx = cx(t) - dir * aside(t);
      const y = lanes(edge.band, edge.lane);
      const out = (r) => (y > r.y + r.h / 2 ? r.y + r.h : r.y);
      return [[sx, out(s)], [sx, y], [tx, y], [tx, out(t)]];
    }

    let frame = 0;
    function draw() {
      frame = 0;
      // The layer fills the grid (style.css) and its user units are CSS pixels.
      if (!grid.isConnected || grid.offsetWidth === 0) return;
      for (const edge of edges) {
        const points = pointsOf(edge);
        const { line, head } = arrow(points);
        setAttr(edge.line, "d", line);
        setAttr(edge.head, "d", head);
        if (edge.label) {
          // beside the arrow's first stretch, on the side away from where it turns
          const [[x0, y0], [x1, y1]] = points;
          const right = points.length < 3 || points[2][0] < x1;
          setAttr(edge.label, "x", Math.round(x0 + (right ? 7 : -7)));
          setAttr(edge.label, "y", Math.round((y0 + y1) / 2));
          setAttr(edge.label, "text-anchor", right ? "start" : "end");
        }
      }
    }
    const schedule = () => {
      if (!frame) frame = window.requestAnimationFrame(draw);
    };
    if (typeof ResizeObserver === "function") {
      const observer = new ResizeObserver(schedule);
      observer.observe(grid);
      for (const box of Object.values(boxes)) observer.observe(box);
    } else {
      window.addEventListener("resize", schedule);
    }

    const wrap = h("div", { class: "flow-scroll" }, grid);

    return {
      element: wrap,
      sagaType: flow.saga_type,
      stepsOf: (type) => eventSteps.get(type) || [],
      hasStep: (name) => stepsByName.has(name),
      serviceOf: (name) => (stepsByName.get(name) || {}).service || "",
      toneOf: (type) => eventTone(type, tones),
      setFocus(name) {
        for (const [key, box] of Object.entries(boxes)) {
          if (!stepsByName.has(key)) continue;
          setAttr(box, "aria-pressed", String(key === name));
          box.classList.toggle("selected", key === name);
        }
        grid.classList.toggle("has-focus", Boolean(name));
      },
      update(saga) {
        const steps = {};
        for (const s of list(saga.steps)) steps[s.name] = s;
        const waiting = waitsFor(saga);
        for (const [name, box] of Object.entries(boxes)) {
          if (stepsByName.has(name)) updateStep(box, name, steps[name], waiting);
        }
        const status = (name) => (steps[name] && steps[name].status) || "pending";
        const started = (name) => status(name) !== "pending";
        const taken = (edge) => {
          if (edge.from === "start") return saga.event_count > 0;
          if (edge.to === "succeeded") return saga.status === "succeeded";
          if (edge.to === "failed") {
            return saga.status === "failed" && status(edge.from) === "succeeded";
          }
          if (edge.kind === "fails") return status(edge.from) === "failed" && started(edge.to);
          return status(edge.from) === "succeeded" && started(edge.to);
        };
        for (const edge of edges) {
          const yes = Boolean(taken(edge));
          setAttr(edge.g, "data-taken", String(yes));
          edge.g.classList.toggle("active", yes && status(edge.to) === "running");
        }
        setAttr(boxes.start, "data-reached", String(saga.event_count > 0));
        setAttr(boxes.succeeded, "data-reached", String(saga.status === "succeeded"));
        setAttr(boxes.failed, "data-reached", String(saga.status === "failed"));
        draw(); // now, in case no frame comes (a page in the background)
      },
    };

    function updateStep(box, name, found, waiting) {
      const s = found || { status: "pending" };
      const status = s.status || "pending";
      setAttr(box, "data-status", status);
      setText(box.querySelector(".step-icon"), STEP_ICON[status] || "?");
      setText(box.querySelector(".step-status"), STEP_LABEL[status] || status);
      const duration =
        s.duration_ms !== null && s.duration_ms !== undefined ? fmtDuration(s.duration_ms) : "";
      setText(box.querySelector(".step-duration"), duration);
      const err = box.querySelector(".step-error");
      if (err.dataset.text !== (s.error || "")) {
        err.dataset.text = s.error || "";
        err.replaceChildren(...camelBreaks(s.error || ""));
        setAttr(err, "title", s.error || null);
      }
      err.hidden = !s.error;
      const expects = list((stepsByName.get(name) || {}).expects);
      const awaited = status === "running" ? waiting.filter((type) => expects.includes(type)) : [];
      const label = [
        name,
        STEP_LABEL[status] || status,
        duration,
        s.error ? `error ${s.error}` : "",
        awaited.length ? `waiting for ${orList(awaited)}` : "",
      ]
        .filter(Boolean)
        .join(", ");
      setAttr(box, "aria-label", `${label}. Select to pick out its events.`);
      const times = s.started_at
        ? `started ${s.started_at}${s.ended_at ? `\nended ${s.ended_at}` : ""}`
        : "not started";
      setAttr(box, "title", awaited.length ? `${times}\nwaiting for ${orList(awaited)}` : times);
    }
  }

  route();
  loadCatalog();
})();
