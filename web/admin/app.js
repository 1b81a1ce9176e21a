// app.js: the store admins' dashboard (/admin). Plain browser JavaScript, no
// build step. Signs in through the API (POST /api/v1/auth/login with the store
// in X-Tenant-Id), keeps the tokens in sessionStorage (this tab only; gone when
// it closes), refreshes the access token once on a 401, and fills each section
// from its route:
//   sales over time, totals   GET /api/v1/admin/analytics/sales
//   top products              GET /api/v1/admin/analytics/top-products
//   recent orders             GET /api/v1/orders
//   low stock                 GET /api/v1/admin/inventory/low-stock
//   failed jobs               GET /api/v1/admin/jobs/dead-letters
//   webhooks and failures     GET /api/v1/admin/webhooks, .../:id/deliveries
// Each section loads on its own: one that fails (a route this server does not
// have yet answers 404) says so and the others still show.
//
// Everything the API returns is put in the page as text (textContent), never
// as HTML: product names and e-mails are the store's customers' input.
// Money is integer minor units; it is formatted with integer arithmetic.
"use strict";

(function () {
  const KEY = "shopd.admin.session";
  const STORE_KEY = "shopd.admin.store";
  const S = { store: "", access: "", refresh: "", currency: "USD" };
  const charts = { sales: null, top: null };
  const $ = (id) => document.getElementById(id);

  // ------------------------------------------------------------ session

  function saveSession() {
    sessionStorage.setItem(KEY, JSON.stringify({ store: S.store, access: S.access, refresh: S.refresh }));
    localStorage.setItem(STORE_KEY, S.store); // the store's name only: no secret
  }

  function loadSession() {
    try {
      const v = JSON.parse(sessionStorage.getItem(KEY) || "null");
      if (v && v.store && v.access) {
        S.store = v.store;
        S.access = v.access;
        S.refresh = v.refresh || "";
        return true;
      }
    } catch (e) {
      /* a damaged entry: sign in again */
    }
    return false;
  }

  function clearSession() {
    S.access = "";
    S.refresh = "";
    sessionStorage.removeItem(KEY);
  }

  // One API call. Answers {status, ok, json}; a network failure is status 0.
  async function api(method, path, body, retried) {
    const headers = { "X-Tenant-Id": S.store, Accept: "application/json" };
    if (S.access) headers.Authorization = "Bearer " + S.access;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let res;
    try {
      res = await fetch(path, {
        method: method,
        headers: headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
      });
    } catch (e) {
      return { status: 0, ok: false, json: null };
    }
    if (res.status === 401 && !retried && (S.refresh || refreshing) && (await refreshTokens()))
      return api(method, path, body, true);
    let json = null;
    try {
      json = await res.json();
    } catch (e) {
      /* an empty or non-JSON answer */
    }
    if (res.status === 401 && retried !== "signin") showSignin("Your session has ended; sign in again.");
    return { status: res.status, ok: res.ok, json: json };
  }

  // The refresh token rotates on every use: keep the new pair. Sections load
  // in parallel, so concurrent 401s share one refresh.
  let refreshing = null;
  function refreshTokens() {
    if (!refreshing) refreshing = doRefresh().finally(() => (refreshing = null));
    return refreshing;
  }

  async function doRefresh() {
    const token = S.refresh;
    S.refresh = "";
    let res;
    try {
      res = await fetch("/api/v1/auth/refresh", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ refresh_token: token }),
      });
    } catch (e) {
      return false;
    }
    if (!res.ok) return false;
    const j = await res.json();
    S.access = j.access_token;
    S.refresh = j.refresh_token;
    saveSession();
    return true;
  }

  function errorText(r) {
    if (r.status === 0) return "the server did not answer";
    const e = r.json && r.json.error;
    return e ? e.message + " (" + e.code + ")" : "HTTP " + r.status;
  }

  // ------------------------------------------------------------ formatting

  const fractionDigits = {}; // currency -> its minor unit digits (Intl knows them)
  function digitsOf(cur) {
    if (!(cur in fractionDigits)) {
      try {
        fractionDigits[cur] = new Intl.NumberFormat("en", { style: "currency", currency: cur })
          .resolvedOptions().maximumFractionDigits;
      } catch (e) {
        fractionDigits[cur] = 2;
      }
    }
    return fractionDigits[cur];
  }

  const group = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });

  // 123456 minor units of USD -> "$1,234.56", by integer arithmetic.
  function money(minor, cur) {
    cur = cur || S.currency;
    if (minor === null || minor === undefined) return "–";
    const d = digitsOf(cur);
    const neg = minor < 0;
    let n = Math.abs(Math.round(minor));
    const unit = Math.pow(10, d);
    const whole = Math.floor(n / unit);
    const frac = d ? "." + String(n % unit).padStart(d, "0") : "";
    let sym = cur + " ";
    try {
      const parts = new Intl.NumberFormat("en-US", { style: "currency", currency: cur }).formatToParts(0);
      const c = parts.find((p) => p.type === "currency");
      if (c) sym = c.value.length === 1 ? c.value : c.value + " ";
    } catch (e) {
      /* unknown code: its letters */
    }
    return (neg ? "-" : "") + sym + group.format(whole) + frac;
  }

  // Axis labels: whole units, short.
  function moneyShort(minor) {
    const whole = Math.round(minor / Math.pow(10, digitsOf(S.currency)));
    return group.format(whole);
  }

  function dateOnly(ts) {
    return ts ? String(ts).slice(0, 10) : "";
  }

  function isoDay(d) {
    return d.toISOString().slice(0, 10);
  }

  // ------------------------------------------------------------ DOM helpers

  function cell(tr, text, cls) {
    const td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "" : String(text);
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }

  function fillTable(id, rows, emptyId, emptyText, row) {
    const body = $(id).querySelector("tbody");
    body.replaceChildren();
    for (const r of rows) {
      const tr = document.createElement("tr");
      row(tr, r);
      body.appendChild(tr);
    }
    $(id).hidden = rows.length === 0;
    const empty = $(emptyId);
    empty.hidden = rows.length !== 0;
    empty.textContent = emptyText;
  }

  function failTable(id, emptyId, text) {
    $(id).querySelector("tbody").replaceChildren();
    $(id).hidden = true;
    $(emptyId).hidden = false;
    $(emptyId).textContent = text;
  }

  function chartWidth(el) {
    return Math.max(280, Math.floor(el.getBoundingClientRect().width || el.parentNode.clientWidth - 40));
  }

  // ------------------------------------------------------------ sections

  function analyticsMissing(r) {
    return r.status === 404
      ? "No analytics data: this server has no analytics routes yet."
      : "Could not load analytics: " + errorText(r);
  }

  async function loadSales(q) {
    const el = $("sales-chart");
    const empty = $("sales-empty");
    if (charts.sales) {
      charts.sales.destroy();
      charts.sales = null;
    }
    const r = await api("GET", "/api/v1/admin/analytics/sales?" + q + "&interval=" + $("interval").value);
    for (const k of ["orders", "revenue", "aov", "refunded"]) $("kpi-" + k).textContent = "–";
    if (!r.ok) {
      empty.hidden = false;
      empty.textContent = analyticsMissing(r);
      return;
    }
    const j = r.json;
    if (j.currency) S.currency = j.currency;
    const t = j.totals || {};
    $("kpi-orders").textContent = group.format(t.orders || 0);
    $("kpi-revenue").textContent = money(t.revenue || 0);
    $("kpi-aov").textContent = money(t.average_order_value || 0);
    $("kpi-refunded").textContent = money(t.refunded || 0);
    const data = j.data || [];
    if (data.length === 0 || !data.some((p) => p.orders || p.revenue)) {
      empty.hidden = false;
      empty.textContent = "No sales in this period.";
      return;
    }
    empty.hidden = true;
    const xs = data.map((p) => Date.parse(p.period + "T00:00:00Z") / 1000);
    const revenue = data.map((p) => p.revenue);
    const orders = data.map((p) => p.orders);
    charts.sales = new uPlot(
      {
        width: chartWidth(el),
        height: 280,
        tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
        series: [
          {},
          {
            label: "Revenue",
            stroke: "#2563eb",
            fill: "rgba(37, 99, 235, 0.08)",
            width: 2,
            scale: "money",
            value: (u, v) => (v === null ? "–" : money(v)),
          },
          { label: "Orders", stroke: "#16a34a", width: 2, scale: "n", value: (u, v) => (v === null ? "–" : v) },
        ],
        scales: { x: { time: true }, money: { range: (u, min, max) => [0, Math.max(1, max) * 1.1] } },
        axes: [
          {},
          { scale: "money", values: (u, vals) => vals.map(moneyShort), size: 70 },
          { scale: "n", side: 1, grid: { show: false } },
        ],
      },
      [xs, revenue, orders],
      el
    );
  }

  async function loadTop(q) {
    const el = $("top-chart");
    if (charts.top) {
      charts.top.destroy();
      charts.top = null;
    }
    const r = await api("GET", "/api/v1/admin/analytics/top-products?" + q + "&limit=5&by=revenue");
    if (!r.ok) {
      failTable("top-table", "top-empty", analyticsMissing(r));
      return;
    }
    const rows = r.json.data || [];
    fillTable("top-table", rows, "top-empty", "No products sold in this period.", (tr, p) => {
      cell(tr, p.name);
      cell(tr, group.format(p.units), "num");
      cell(tr, money(p.revenue), "num");
    });
    if (rows.length === 0) return;
    const idx = rows.map((_, i) => i);
    const names = rows.map((p) => (p.name.length > 15 ? p.name.slice(0, 14) + "…" : p.name));
    charts.top = new uPlot(
      {
        width: chartWidth(el),
        height: 220,
        legend: { show: false },
        series: [
          {},
          {
            label: "Revenue",
            fill: "rgba(37, 99, 235, 0.75)",
            stroke: "#2563eb",
            paths: uPlot.paths.bars({ size: [0.6, 80] }),
            points: { show: false },
          },
        ],
        scales: {
          x: { time: false, range: () => [-0.5, rows.length - 0.5] },
          y: { range: (u, min, max) => [0, Math.max(1, max) * 1.1] },
        },
        axes: [
          { splits: () => idx, values: (u, vals) => vals.map((v) => names[v] || "") },
          { values: (u, vals) => vals.map(moneyShort), size: 70 },
        ],
      },
      [idx, rows.map((p) => p.revenue)],
      el
    );
  }

  async function loadOrders() {
    const r = await api("GET", "/api/v1/orders?limit=10");
    if (!r.ok) return failTable("orders-table", "orders-empty", "Could not load orders: " + errorText(r));
    fillTable("orders-table", r.json.data || [], "orders-empty", "No orders yet.", (tr, o) => {
      cell(tr, o.name);
      cell(tr, dateOnly(o.created_at));
      cell(tr, o.email, "clip");
      const s = cell(tr, "");
      const pill = document.createElement("span");
      pill.className = "status";
      pill.textContent = o.status + (o.payment_status ? " · " + o.payment_status : "");
      s.appendChild(pill);
      cell(tr, money(o.total, o.currency), "num");
    });
  }

  async function loadStock() {
    const r = await api("GET", "/api/v1/admin/inventory/low-stock?threshold=5&limit=20");
    if (!r.ok) return failTable("stock-table", "stock-empty", "Could not load stock: " + errorText(r));
    fillTable("stock-table", r.json.data || [], "stock-empty", "Every variant has more than 5 in stock.", (tr, v) => {
      const opts = v.options && Object.keys(v.options).length
        ? " (" + Object.values(v.options).join(" / ") + ")"
        : "";
      cell(tr, v.product_name + opts);
      cell(tr, v.sku);
      cell(tr, v.stock, "num");
    });
  }

  async function loadJobs() {
    const r = await api("GET", "/api/v1/admin/jobs/dead-letters?limit=10");
    if (!r.ok) return failTable("jobs-table", "jobs-empty", "Could not load jobs: " + errorText(r));
    fillTable("jobs-table", r.json.data || [], "jobs-empty", "No failed jobs.", (tr, d) => {
      cell(tr, d.kind);
      cell(tr, d.event);
      cell(tr, d.attempts, "num");
      cell(tr, d.last_error || "", "clip");
      cell(tr, dateOnly(d.failed_at));
    });
  }

  async function loadWebhooks() {
    const r = await api("GET", "/api/v1/admin/webhooks?limit=20");
    if (!r.ok) return failTable("webhooks-table", "webhooks-empty", "Could not load webhooks: " + errorText(r));
    const hooks = r.json.data || [];
    // The latest 50 deliveries of each endpoint: a failure is no answer or a non-2xx one.
    const stats = await Promise.all(
      hooks.map(async (h) => {
        const d = await api("GET", "/api/v1/admin/webhooks/" + h.id + "/deliveries?limit=50");
        if (!d.ok) return { failed: null, last: "could not load: " + errorText(d) };
        const bad = (d.json.data || []).filter((x) => x.status_code === null || x.status_code < 200 || x.status_code > 299);
        const last = bad[0];
        return {
          failed: bad.length,
          last: last
            ? dateOnly(last.created_at) + " " + (last.status_code ? "HTTP " + last.status_code : last.error || "no answer")
            : "",
        };
      })
    );
    fillTable("webhooks-table", hooks.map((h, i) => [h, stats[i]]), "webhooks-empty", "No webhook endpoints.", (tr, x) => {
      cell(tr, x[0].url, "clip");
      cell(tr, x[0].enabled ? "yes" : "no");
      cell(tr, x[1].failed === null ? "?" : x[1].failed, "num");
      cell(tr, x[1].last, "clip");
    });
  }

  async function loadStore() {
    const r = await api("GET", "/api/v1/store");
    if (r.ok && r.json) {
      $("store-name").textContent = r.json.name || S.store;
      if (r.json.currency) S.currency = r.json.currency;
    }
  }

  async function loadAll() {
    const q = "from=" + $("from").value + "&to=" + $("to").value;
    $("reload").disabled = true;
    await loadStore();
    await Promise.all([loadSales(q), loadTop(q), loadOrders(), loadStock(), loadJobs(), loadWebhooks()]);
    $("reload").disabled = false;
    $("loaded-at").textContent = "updated " + new Date().toLocaleTimeString();
    document.body.dataset.loaded = String(Date.now()); // for the browser test: every section is done
  }

  // ------------------------------------------------------------ sign in and out

  function showSignin(message) {
    clearSession();
    $("dashboard").hidden = true;
    $("signout").hidden = true;
    $("signin").hidden = false;
    $("store-name").textContent = "";
    $("signin-store").value = S.store || localStorage.getItem(STORE_KEY) || "";
    const err = $("signin-error");
    err.hidden = !message;
    err.textContent = message || "";
  }

  function showDashboard() {
    $("signin").hidden = true;
    $("dashboard").hidden = false;
    $("signout").hidden = false;
    loadAll();
  }

  async function signIn(ev) {
    ev.preventDefault();
    const err = $("signin-error");
    err.hidden = true;
    $("signin-submit").disabled = true;
    S.store = $("signin-store").value.trim();
    S.access = "";
    const r = await api(
      "POST",
      "/api/v1/auth/login",
      { email: $("signin-email").value.trim(), password: $("signin-password").value },
      "signin"
    );
    $("signin-submit").disabled = false;
    $("signin-password").value = "";
    if (!r.ok) {
      err.hidden = false;
      err.textContent =
        r.status === 401 ? "Wrong e-mail or password." : r.status === 404 ? "No such store." : errorText(r);
      return;
    }
    const role = r.json.user && r.json.user.role;
    if (role !== "STORE_ADMIN") {
      err.hidden = false;
      err.textContent = "This account is not a store admin of " + S.store + ".";
      return;
    }
    S.access = r.json.access_token;
    S.refresh = r.json.refresh_token;
    saveSession();
    showDashboard();
  }

  async function signOut() {
    if (S.refresh) await api("POST", "/api/v1/auth/logout", { refresh_token: S.refresh }, "signin");
    showSignin("");
  }

  // ------------------------------------------------------------ start

  function start() {
    const to = new Date();
    const from = new Date(to.getTime() - 29 * 86400000);
    $("from").value = isoDay(from);
    $("to").value = isoDay(to);
    $("signin-form").addEventListener("submit", signIn);
    $("signout").addEventListener("click", signOut);
    $("reload").addEventListener("click", loadAll);
    $("interval").addEventListener("change", loadAll);
    const params = new URLSearchParams(window.location.search);
    if (params.get("store")) localStorage.setItem(STORE_KEY, params.get("store"));
    if (loadSession()) showDashboard();
    else showSignin("");
  }

  document.addEventListener("DOMContentLoaded", start);
})();
