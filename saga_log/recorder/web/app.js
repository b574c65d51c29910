/* Saga history: a live view of the order saga's recorded events.
 *
 * Plain JavaScript, no build step, no network beyond the recorder's own API:
 *   GET sagas?status=&limit=&offset=   the list, with counts per status
 *   GET sagas/{saga_id}                one saga: derived steps and ordered timeline
 *
 * Routes live in the URL hash so that every view can be linked:
 *   #/?status=failed&offset=25         the list, filtered and paged
 *   #/sagas/<saga_id>                  one saga
 *
 * Every text that comes from the API is put in the page with textContent (never as HTML).
 * Views are updated in place on each poll, keyed by saga id and message id, so expanded
 * events, focus and scroll position survive live updates.
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
  const SERVICE = {
    ProcessOrder: "order",
    ProcessPayment: "payment",
    ReserveInventory: "inventory",
    ReleaseInventory: "inventory",
    ProcessRefund: "payment",
    UpdateOrderStatus: "order",
  };
  /** Which steps each event type reports on (as saga_log/recorder/state.py derives them). */
  const EVENT_STEPS = {
    PlaceOrder: ["ProcessOrder"],
    OrderCreated: ["ProcessOrder", "ProcessPayment"],
    OrderCreateFailed: ["ProcessOrder", "UpdateOrderStatus"],
    PaymentDebited: ["ProcessPayment", "ReserveInventory"],
    PaymentDebitFailed: ["ProcessPayment", "ProcessRefund"],
    InventoryReserved: ["ReserveInventory"],
    InventoryReserveFailed: ["ReserveInventory", "ReleaseInventory"],
    InventoryReleased: ["ReleaseInventory", "ProcessRefund"],
    PaymentRefunded: ["ProcessRefund", "UpdateOrderStatus"],
    OrderFailed: ["UpdateOrderStatus"],
    OrderStatusUpdated: ["UpdateOrderStatus"],
    OrderRejected: ["ProcessOrder"],
  };
  /** Fields worth a glance in an event's one-line summary, in this order. */
  const SUMMARY_FIELDS = [
    "step",
    "error",
    "reason",
    "fields",
    "cause",
    "amount",
    "order_status",
    "failed_compensation",
    "compensation_error",
    "queue",
    "attempts",
    "waited_seconds",
    "transaction_id",
  ];
  const ERROR_FIELDS = new Set(["error", "reason", "cause", "compensation_error"]);

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

  // --- routing ----------------------------------------------------------------------

  const main = document.getElementById("main");
  let lastListHash = "#/";

  function parseRoute() {
    const hash = window.location.hash || "#/";
    const sagaMatch = /^#\/sagas\/(.+)$/.exec(hash);
    if (sagaMatch) {
      let id = sagaMatch[1];
      try {
        id = decodeURIComponent(id);
      } catch {
        /* keep it as typed */
      }
      return { view: "saga", id };
    }
    const query = hash.includes("?") ? hash.slice(hash.indexOf("?") + 1) : "";
    const params = new URLSearchParams(query);
    const offset = Math.max(0, Number.parseInt(params.get("offset") || "0", 10) || 0);
    const limit = Math.min(
      500,
      Math.max(1, Number.parseInt(params.get("limit") || String(PAGE_SIZE), 10) || PAGE_SIZE),
    );
    return { view: "list", status: params.get("status") || "", offset, limit };
  }

  function listHash(status, offset, limit) {
    const params = new URLSearchParams();
    if (status) params.set("status", status);
    if (offset) params.set("offset", String(offset));
    if (limit && limit !== PAGE_SIZE) params.set("limit", String(limit));
    const query = params.toString();
    return query ? `#/?${query}` : "#/";
  }

  function sagaHash(id) {
    return `#/sagas/${encodeURIComponent(id)}`;
  }

  let currentView = null;

  function route() {
    const next = parseRoute();
    const sameSaga =
      currentView &&
      currentView.route.view === "saga" &&
      next.view === "saga" &&
      currentView.route.id === next.id;
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
    const inUrl = /#\/sagas\/([^?#\s]+)/.exec(id);
    if (inUrl) id = decodeURIComponent(inUrl[1]);
    if (!id) {
      input.focus();
      return;
    }
    window.location.hash = sagaHash(id);
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
          href: listHash(status, 0, view.route.limit),
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
          h("th", { scope: "col", text: "Saga id" }),
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
        window.location.hash = listHash(r.status, Math.max(0, r.offset - r.limit), r.limit);
      },
    });
    const next = h("button", {
      type: "button",
      class: "button",
      "data-testid": "page-next",
      text: "Older →",
      onclick: () => {
        const r = view.route;
        window.location.hash = listHash(r.status, r.offset + r.limit, r.limit);
      },
    });
    const pager = h("div", { class: "pager" }, prev, pageInfo, next);
    const loading = h("p", { class: "loading", text: "Loading sagas…" });

    view.element = h(
      "section",
      { class: "list-view", "aria-labelledby": "list-title" },
      h("div", { class: "view-head" }, heading),
      chipNav,
      refused,
      loading,
      h("div", { class: "table-wrap" }, table),
      empty,
      pager,
    );
    heading.id = "list-title";
    view.heading = heading;

    let seen = null; // saga ids seen so far: rows that appear later flash once

    view.changed = () => {
      const r = view.route;
      seen = null;
      lastListHash = listHash(r.status, r.offset, r.limit);
      for (const [key, { chip }] of Object.entries(chips)) {
        const active = (r.status || "all") === key;
        setAttr(chip, "aria-current", active ? "true" : null);
        chip.classList.toggle("active", active);
        chip.href = listHash(key === "all" ? "" : key, 0, r.limit);
      }
      setText(heading, r.status ? `Sagas · ${STATUS_LABEL[r.status] || r.status}` : "Sagas");
      document.title = r.status
        ? `${STATUS_LABEL[r.status] || r.status} sagas · Saga history`
        : "Saga history";
    };
    view.changed();

    view.path = () => {
      const r = view.route;
      const params = new URLSearchParams({ limit: String(r.limit), offset: String(r.offset) });
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
      const counts = data.counts || {};
      setText(chips.all.count, counts.total ?? 0);
      for (const status of STATUSES) setText(chips[status].count, counts[status] ?? 0);

      const sagas = Array.isArray(data.sagas) ? data.sagas : [];
      const firstRender = seen === null;
      if (firstRender) seen = new Set();
      reconcile(
        tbody,
        sagas,
        (saga) => saga.saga_id,
        createRow,
        (row, saga, _i, fresh) => {
          updateRow(row, saga);
          if (fresh && !firstRender && !seen.has(saga.saga_id)) row.classList.add("flash");
          seen.add(saga.saga_id);
        },
      );

      const r = view.route;
      const total = Number(data.total ?? 0);
      empty.hidden = sagas.length > 0;
      table.hidden = sagas.length === 0;
      if (sagas.length === 0) {
        setText(
          empty,
          r.offset > 0 && total > 0
            ? "Nothing on this page: go back to newer sagas."
            : r.status
              ? `No ${STATUS_LABEL[r.status] ? STATUS_LABEL[r.status].toLowerCase() : r.status} sagas yet. This list updates by itself.`
              : "No saga recorded yet. Place an order (make order SCENARIO=ok) and it appears here.",
        );
      }
      const first = sagas.length ? r.offset + 1 : 0;
      const last = r.offset + sagas.length;
      setText(pageInfo, total ? `${first}–${last} of ${total}` : "0 sagas");
      prev.disabled = r.offset <= 0;
      next.disabled = last >= total;
    };

    function createRow(saga) {
      const link = h("a", { class: "mono saga-link", href: sagaHash(saga.saga_id) });
      const row = h(
        "tr",
        { "data-testid": "saga-row" },
        h("td", { class: "cell-id", "data-label": "Saga id" }, link),
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
        window.location.hash = sagaHash(saga.saga_id);
      });
      return row;
    }

    function updateRow(row, saga) {
      setAttr(row, "data-saga-id", saga.saga_id);
      setAttr(row, "data-status", saga.status);
      const [idCell, statusCell, stepCell, startedCell, durationCell, eventsCell, causeCell] =
        row.children;
      setText(idCell.firstChild, saga.saga_id);
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
      const causeKey = JSON.stringify([saga.attention, saga.cause]);
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
        if (!saga.attention && !saga.cause)
          causeCell.append(h("span", { class: "muted", text: "—" }));
      }
    }

    return view;
  }

  // --- saga view --------------------------------------------------------------------

  function sagaView(initialRoute) {
    const view = { route: initialRoute };
    const id = initialRoute.id;
    document.title = `Saga ${shortId(id)} · Saga history`;

    const back = h("a", { class: "back", href: lastListHash, text: "← All sagas" });
    const heading = h(
      "h1",
      { class: "view-title saga-title", tabindex: "-1" },
      h("span", { class: "title-kicker", text: "Saga " }),
      h("span", { class: "mono", "data-testid": "saga-id", text: id }),
    );
    const copyId = h("button", {
      type: "button",
      class: "button button-small",
      text: "Copy id",
      onclick: (event) => copyText(id, event.currentTarget),
    });
    const statusSlot = h("span", { class: "status-slot" });
    const meta = h("dl", { class: "meta" });
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
      h("strong", { text: "No saga with this id has been recorded (yet)." }),
      " This page keeps looking and shows the saga as soon as its first event arrives. ",
      h("a", { href: "#/", text: "Back to all sagas" }),
    );
    const loading = h("p", { class: "loading", text: "Loading the saga…" });

    const flow = buildFlow((name) => toggleFocus(name));
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
          "Forward steps on top, their compensations beneath. Select a step to pick out its events.",
        ),
        flow.element,
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
        h("div", { class: "saga-head-top" }, heading, statusSlot, copyId),
        meta,
        attention,
        cause,
      ),
      loading,
      notFound,
      body,
    );
    view.heading = heading;
    view.changed = () => {};
    view.path = () => `sagas/${encodeURIComponent(id)}`;

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
      flow.setFocus(focusStep);
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
      if (error.status === 404) {
        notFound.hidden = false;
        body.hidden = true;
        statusSlot.textContent = "";
        lastStatus = null;
      } else {
        notFound.hidden = false;
        setText(notFound.firstChild, `The API refused this saga: ${error.message}`);
      }
    };

    view.render = (data) => {
      loading.hidden = true;
      notFound.hidden = true;
      body.hidden = false;
      const saga = data.saga || {};
      const timeline = causalOrder(Array.isArray(data.timeline) ? data.timeline : []);

      if (lastStatus !== saga.status) {
        statusSlot.textContent = "";
        statusSlot.append(statusBadge(saga.status, "saga-status"));
        lastStatus = saga.status;
        document.title = `Saga ${shortId(id)} · ${STATUS_LABEL[saga.status] || saga.status} · Saga history`;
      }
      renderMeta(saga);

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

      flow.update(saga);

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

    function renderMeta(saga) {
      const rows = [
        ["Current step", saga.current_step || "—"],
        [
          "Started",
          saga.started_at ? `${fmtDateTime(saga.started_at)} (${fmtAgo(saga.started_at)})` : "—",
        ],
        [
          "Ended",
          saga.ended_at ? fmtDateTime(saga.ended_at) : saga.status === "running" ? "not yet" : "—",
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
      const steps = new Set(EVENT_STEPS[event.type] || []);
      if (
        (event.type === "SagaCompensationFailed" || event.type === "MessageParked") &&
        payload.step
      ) {
        steps.add(String(payload.step));
      }
      const tone = eventTone(event.type);
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

  /** Events in time order, but never before the event that caused them (a client's order
   * JSON has no occurred_at, so the recorder can only date it by its own reception). */
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

  function eventTone(type) {
    if (type === "OrderSucceeded") return "success";
    if (type === "OrderFailed" || type === "OrderRejected") return "terminal-failed";
    if (type === "SagaCompensationFailed" || type === "MessageParked") return "attention";
    if (type === "SagaCancelled") return "failed";
    if (/Failed$/.test(type || "")) return "failed";
    return "normal";
  }

  function summarize(type, payload) {
    const parts = [];
    if ((type === "PlaceOrder" || type === "OrderCreated") && Array.isArray(payload.items)) {
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
      else parts.push([key, key === "transaction_id" ? shortId(value) : value]);
    }
    return parts;
  }

  function legend() {
    return h(
      "ul",
      { class: "legend", "aria-label": "Step colours" },
      Object.keys(STEP_LABEL).map((status) =>
        h(
          "li",
          { "data-status": status },
          h("span", { class: "legend-swatch", "aria-hidden": "true" }),
          STEP_LABEL[status],
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

  /**
   * A 9 x 3 grid:
   *   Start → ProcessOrder → ProcessPayment → ReserveInventory → Succeeded
   *              ↓ fails          ↓ fails          ↓ fails
   *   Failed ← UpdateOrderStatus ← ProcessRefund ← ReleaseInventory
   * Each compensation sits beneath the forward step it undoes.
   */
  function buildFlow(onSelect) {
    const grid = h("div", {
      class: "flow",
      "data-testid": "flow",
      role: "group",
      "aria-label": "Saga flow",
    });
    const boxes = {};
    const edges = {};

    const place = (el, col, row) => {
      el.style.gridColumn = String(col);
      el.style.gridRow = String(row);
      grid.append(el);
      return el;
    };
    const terminal = (key, label, col, row) => {
      const el = h(
        "div",
        {
          class: `terminal terminal-${key}`,
          "data-testid": `terminal-${key}`,
          "data-reached": "false",
        },
        h("span", { class: "terminal-label", text: label }),
      );
      boxes[`terminal-${key}`] = el;
      return place(el, col, row);
    };
    const edge = (key, direction, col, row, label) => {
      const el = h(
        "div",
        {
          class: `edge edge-${direction}`,
          "data-edge": key,
          "data-taken": "false",
          "aria-hidden": "true",
        },
        h("span", { class: "edge-line" }),
        label ? h("span", { class: "edge-label", text: label }) : null,
      );
      edges[key] = el;
      return place(el, col, row);
    };
    const step = (name, kind, col, row) => {
      const el = h(
        "button",
        {
          type: "button",
          class: `step step-${kind}`,
          "data-testid": `step-${name}`,
          "data-step": name,
          "data-kind": kind,
          "data-status": "pending",
          "aria-pressed": "false",
          onclick: () => onSelect(name),
        },
        h("span", { class: "step-name" }, camelBreaks(name)),
        h("span", { class: "step-service", text: `${SERVICE[name]} · ${kind}` }),
        h(
          "span",
          { class: "step-state" },
          h("span", { class: "step-icon", "aria-hidden": "true" }),
          h("span", { class: "step-status", "data-testid": "step-status" }),
          h("span", { class: "step-duration", "data-testid": "step-duration" }),
        ),
        h("span", { class: "step-error", "data-testid": "step-error", hidden: true }),
      );
      boxes[name] = el;
      return place(el, col, row);
    };

    terminal("start", "Start", 1, 1);
    edge("start-ProcessOrder", "right", 2, 1);
    step("ProcessOrder", "forward", 3, 1);
    edge("ProcessOrder-ProcessPayment", "right", 4, 1);
    step("ProcessPayment", "forward", 5, 1);
    edge("ProcessPayment-ReserveInventory", "right", 6, 1);
    step("ReserveInventory", "forward", 7, 1);
    edge("ReserveInventory-succeeded", "right", 8, 1);
    terminal("succeeded", "Succeeded", 9, 1);

    edge("ProcessOrder-UpdateOrderStatus", "down", 3, 2, "fails");
    edge("ProcessPayment-ProcessRefund", "down", 5, 2, "fails");
    edge("ReserveInventory-ReleaseInventory", "down", 7, 2, "fails");

    terminal("failed", "Failed", 1, 3);
    edge("UpdateOrderStatus-failed", "left", 2, 3);
    step("UpdateOrderStatus", "compensation", 3, 3);
    edge("ProcessRefund-UpdateOrderStatus", "left", 4, 3);
    step("ProcessRefund", "compensation", 5, 3);
    edge("ReleaseInventory-ProcessRefund", "left", 6, 3);
    step("ReleaseInventory", "compensation", 7, 3);

    const wrap = h("div", { class: "flow-scroll" }, grid);

    return {
      element: wrap,
      setFocus(name) {
        for (const [key, box] of Object.entries(boxes)) {
          if (key.startsWith("terminal-")) continue;
          setAttr(box, "aria-pressed", String(key === name));
          box.classList.toggle("selected", key === name);
        }
        grid.classList.toggle("has-focus", Boolean(name));
      },
      update(saga) {
        const steps = {};
        for (const s of saga.steps || []) steps[s.name] = s;
        for (const [name, box] of Object.entries(boxes)) {
          if (name.startsWith("terminal-")) continue;
          const s = steps[name] || { status: "pending" };
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
          const label = [
            name,
            STEP_LABEL[status] || status,
            duration,
            s.error ? `error ${s.error}` : "",
          ]
            .filter(Boolean)
            .join(", ");
          setAttr(box, "aria-label", `${label}. Select to pick out its events.`);
          setAttr(
            box,
            "title",
            s.started_at
              ? `started ${s.started_at}${s.ended_at ? `\nended ${s.ended_at}` : ""}`
              : "not started",
          );
        }
        const st = (name) => (steps[name] && steps[name].status) || "pending";
        const started = (name) => st(name) !== "pending";
        const taken = {
          "start-ProcessOrder": started("ProcessOrder") || saga.event_count > 0,
          "ProcessOrder-ProcessPayment":
            st("ProcessOrder") === "succeeded" && started("ProcessPayment"),
          "ProcessPayment-ReserveInventory":
            st("ProcessPayment") === "succeeded" && started("ReserveInventory"),
          "ReserveInventory-succeeded": saga.status === "succeeded",
          "ProcessOrder-UpdateOrderStatus":
            st("ProcessOrder") === "failed" && started("UpdateOrderStatus"),
          "ProcessPayment-ProcessRefund":
            st("ProcessPayment") === "failed" && started("ProcessRefund"),
          "ReserveInventory-ReleaseInventory":
            st("ReserveInventory") === "failed" && started("ReleaseInventory"),
          "ReleaseInventory-ProcessRefund":
            st("ReleaseInventory") === "succeeded" && started("ProcessRefund"),
          "ProcessRefund-UpdateOrderStatus":
            st("ProcessRefund") === "succeeded" && started("UpdateOrderStatus"),
          "UpdateOrderStatus-failed":
            saga.status === "failed" && st("UpdateOrderStatus") === "succeeded",
        };
        for (const [key, el] of Object.entries(edges)) {
          const target = key.split("-")[1];
          const active = taken[key] && steps[target] && steps[target].status === "running";
          setAttr(el, "data-taken", String(Boolean(taken[key])));
          el.classList.toggle("active", Boolean(active));
        }
        setAttr(boxes["terminal-start"], "data-reached", String(saga.event_count > 0));
        setAttr(boxes["terminal-succeeded"], "data-reached", String(saga.status === "succeeded"));
        setAttr(boxes["terminal-failed"], "data-reached", String(saga.status === "failed"));
      },
    };
  }

  route();
})();
