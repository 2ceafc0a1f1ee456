// Ops dashboard: reads /api/v1/metrics/closure every 30 s and redraws in place.
// Plain JavaScript, no framework; Chart.js is served next to this file.
(() => {
  "use strict";

  const REFRESH_MS = 30000;
  const TIMEOUT_MS = 15000;
  const API = "api/v1/metrics/closure"; // relative: works behind a path-prefixing proxy
  const TIMEZONE = "Asia/Shanghai"; // the API's report days are province-local dates
  const TARGET_RATE = 99;
  const WARN_RATE = 95;

  const $ = (id) => document.getElementById(id);
  const catalog = JSON.parse($("catalog-names").textContent);
  const departmentNames = new Map(catalog.departments.map((d) => [d.code, d.name]));
  const items = new Map(catalog.items.map((i) => [i.code, i]));

  const integerFormat = new Intl.NumberFormat("zh-CN", { maximumFractionDigits: 0 });
  const twoDecimals = new Intl.NumberFormat("zh-CN", {
    minimumFractionDigits: 2,
    maximumFractionDigits: 2,
  });
  const oneDecimal = new Intl.NumberFormat("zh-CN", {
    minimumFractionDigits: 1,
    maximumFractionDigits: 1,
  });
  const clockFormat = new Intl.DateTimeFormat("zh-CN", {
    timeZone: TIMEZONE,
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    hourCycle: "h23",
  });
  const timeFormat = new Intl.DateTimeFormat("zh-CN", {
    timeZone: TIMEZONE,
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    hourCycle: "h23",
  });

  const missing = "—";
  const count = (n) => (n === null || n === undefined ? missing : integerFormat.format(n));
  const percent = (p) => (p === null || p === undefined ? missing : `${twoDecimals.format(p)}%`);

  // ---- dates (YYYY-MM-DD in the province's time zone) ----

  function todayKey() {
    const parts = new Intl.DateTimeFormat("en-US", {
      timeZone: TIMEZONE,
      year: "numeric",
      month: "2-digit",
      day: "2-digit",
    }).formatToParts(new Date());
    const part = (type) => parts.find((p) => p.type === type).value;
    return `${part("year")}-${part("month")}-${part("day")}`;
  }

  function addDays(key, days) {
    const date = new Date(`${key}T00:00:00Z`);
    date.setUTCDate(date.getUTCDate() + days);
    return date.toISOString().slice(0, 10);
  }

  function daysBetween(from, to) {
    const keys = [];
    for (let key = from; key <= to; key = addDays(key, 1)) keys.push(key);
    return keys;
  }

  // ---- fetching ----

  async function fetchJson(query, signal) {
    const url = query ? `${API}?${query}` : API;
    let response;
    try {
      response = await fetch(url, {
        signal,
        cache: "no-store",
        headers: { Accept: "application/json" },
      });
    } catch (error) {
      throw new Error(signal.aborted ? `请求超时（${TIMEOUT_MS / 1000} 秒）` : "无法连接服务器");
    }
    if (!response.ok) {
      let message = "";
      try {
        const body = await response.json();
        message = (body && body.error && body.error.message) || "";
      } catch (error) {
        // not our JSON (a proxy's error page): the status says enough
      }
      throw new Error(`HTTP ${response.status}${message ? `（${message}）` : ""}`);
    }
    try {
      return await response.json();
    } catch (error) {
      throw new Error("返回的数据无法解析");
    }
  }

  // ---- totals ----

  function setText(id, text) {
    $(id).textContent = text;
  }

  function renderTotals(totals) {
    setText("closure-rate", percent(totals.closure_rate));
    const rateCard = $("rate-card");
    rateCard.classList.remove("warn", "bad", "none");
    if (totals.closure_rate === null) rateCard.classList.add("none");
    else if (totals.closure_rate < WARN_RATE) rateCard.classList.add("bad");
    else if (totals.closure_rate < TARGET_RATE) rateCard.classList.add("warn");

    for (const id of ["received-count", "received-count-inline"]) setText(id, count(totals.received));
    for (const id of ["closed-count", "closed-count-inline"]) setText(id, count(totals.closed.total));
    setText("closed-approved", count(totals.closed.approved));
    setText("closed-rejected", count(totals.closed.rejected));
    setText("closed-withdrawn", count(totals.closed.withdrawn));
    setText("open-count", count(totals.open));
    setText("overdue-count", count(totals.overdue));
    $("overdue-card").classList.toggle("alert", totals.overdue > 0);
    setText("on-time-rate", percent(totals.on_time_rate));

    const hours = totals.median_handling_hours;
    setText("median-hours", hours === null ? missing : oneDecimal.format(hours));
    setText(
      "median-days",
      hours !== null && hours >= 24 ? `受理至办结，约 ${oneDecimal.format(hours / 24)} 天` : "受理至办结",
    );
    const rating = totals.satisfaction;
    setText("satisfaction", rating.average === null ? missing : twoDecimals.format(rating.average));
    setText("satisfaction-count", count(rating.count));
  }

  // ---- charts ----

  const charts = {};

  function setUpCharts() {
    if (typeof Chart === "undefined") return false;
    if (charts.rate) return true;
    const fontFamily = getComputedStyle(document.body).fontFamily;
    Chart.defaults.font.family = fontFamily;
    Chart.defaults.color = "#8c9ab3";
    Chart.defaults.borderColor = "rgba(140, 154, 179, 0.14)";
    Chart.defaults.animation = false;
    const common = {
      responsive: true,
      maintainAspectRatio: false,
      interaction: { mode: "index", intersect: false },
      plugins: {
        legend: { position: "top", align: "end", labels: { boxWidth: 12, boxHeight: 12 } },
      },
      scales: { x: { grid: { display: false }, ticks: { maxRotation: 0, autoSkipPadding: 12 } } },
    };
    charts.rate = new Chart($("rate-chart"), {
      type: "line",
      data: {
        labels: [],
        datasets: [
          {
            label: "办结率",
            data: [],
            borderColor: "#4ea1ff",
            backgroundColor: "rgba(78, 161, 255, 0.15)",
            fill: true,
            tension: 0.25,
            pointRadius: 2,
            borderWidth: 2,
          },
          {
            label: `目标 ${TARGET_RATE}%`,
            data: [],
            borderColor: "#fbbf24",
            borderDash: [6, 4],
            borderWidth: 1.5,
            pointRadius: 0,
            fill: false,
          },
        ],
      },
      options: {
        ...common,
        scales: {
          ...common.scales,
          y: { suggestedMax: 100, max: 100, ticks: { callback: (v) => `${v}%` } },
        },
        plugins: {
          ...common.plugins,
          tooltip: { callbacks: { label: (c) => `${c.dataset.label}：${percent(c.parsed.y)}` } },
        },
      },
    });
    charts.volume = new Chart($("volume-chart"), {
      type: "bar",
      data: {
        labels: [],
        datasets: [
          { label: "受理", data: [], backgroundColor: "#5b7db1", borderRadius: 2 },
          { label: "当日办结", data: [], backgroundColor: "#34d399", borderRadius: 2 },
        ],
      },
      options: {
        ...common,
        scales: {
          ...common.scales,
          y: { beginAtZero: true, ticks: { callback: (v) => integerFormat.format(v) } },
        },
        plugins: {
          ...common.plugins,
          tooltip: { callbacks: { label: (c) => `${c.dataset.label}：${count(c.parsed.y)} 件` } },
        },
      },
    });
    return true;
  }

  function renderDays(report, range) {
    if (!setUpCharts()) throw new Error("图表组件未能加载");
    const byDay = new Map(report.groups.map((g) => [g.key, g]));
    const keys = daysBetween(range.from, range.to);
    const labels = keys.map((k) => k.slice(5)); // MM-DD
    const rows = keys.map((k) => byDay.get(k));
    charts.rate.data.labels = labels;
    charts.rate.data.datasets[0].data = rows.map((g) => (g ? g.closure_rate : null));
    charts.rate.data.datasets[1].data = keys.map(() => TARGET_RATE);
    charts.volume.data.labels = labels;
    charts.volume.data.datasets[0].data = rows.map((g) => (g ? g.received : 0));
    // Closed on that day, whenever received (older APIs: closed of that day's receipts).
    const byClosureDay = report.groups.some((g) => typeof g.closed_on_day === "number");
    charts.volume.data.datasets[1].label = byClosureDay ? "当日办结" : "办结（按受理日）";
    charts.volume.data.datasets[1].data = rows.map((g) => {
      if (!g) return 0;
      return byClosureDay ? g.closed_on_day || 0 : g.closed.total;
    });
    charts.rate.update("none");
    charts.volume.update("none");

    const today = byDay.get(range.to);
    const closedToday = byClosureDay ? today && today.closed_on_day : today && today.closed.total;
    setText("today-received", count(today ? today.received : 0));
    setText("today-closed", count(closedToday || 0));
  }

  // ---- backlog tables ----

  function cell(text, className) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    return td;
  }

  function barCell(value, max, kind) {
    const td = cell("", `num bar-cell ${kind}`);
    if (kind === "overdue" && value > 0) td.classList.add("overdue-hot");
    const number = document.createElement("span");
    number.textContent = count(value);
    const bar = document.createElement("div");
    bar.className = "bar";
    const fill = document.createElement("i");
    fill.style.width = max > 0 ? `${((100 * value) / max).toFixed(1)}%` : "0";
    bar.append(fill);
    td.append(number, bar);
    return td;
  }

  function rateCell(rate) {
    let className = "num";
    if (rate !== null && rate < WARN_RATE) className += " rate-bad";
    else if (rate !== null && rate < TARGET_RATE) className += " rate-warn";
    return cell(percent(rate), className);
  }

  function renderBacklog(tableId, groups, nameCells) {
    const sorted = [...groups].sort(
      (a, b) => b.overdue - a.overdue || b.open - a.open || b.received - a.received,
    );
    const maxOpen = Math.max(0, ...sorted.map((g) => g.open));
    const maxOverdue = Math.max(0, ...sorted.map((g) => g.overdue));
    const tbody = document.createElement("tbody");
    for (const group of sorted) {
      const row = document.createElement("tr");
      row.dataset.code = group.key;
      row.append(
        ...nameCells(group.key),
        barCell(group.open, maxOpen, "open"),
        barCell(group.overdue, maxOverdue, "overdue"),
        rateCell(group.closure_rate),
        cell(count(group.received), "num muted"),
      );
      tbody.append(row);
    }
    if (!sorted.length) {
      const row = document.createElement("tr");
      row.className = "empty";
      const td = cell("暂无数据");
      td.colSpan = $(tableId).tHead.rows[0].cells.length;
      row.append(td);
      tbody.append(row);
    }
    $(tableId).tBodies[0].replaceWith(tbody);
  }

  const departmentName = (code) => departmentNames.get(code) || code;

  function renderDepartments(report) {
    renderBacklog("department-table", report.groups, (code) => [
      cell(departmentName(code), "name"),
    ]);
  }

  function renderItems(report) {
    renderBacklog("item-table", report.groups, (code) => {
      const item = items.get(code);
      return [
        cell(item ? item.name : code, "name"),
        cell(item ? departmentName(item.department) : missing, "dept"),
      ];
    });
  }

  // ---- refresh loop ----

  const sections = [
    { label: "总体指标", query: () => "", render: renderTotals },
    {
      label: "每日走势",
      query: (range) => `group_by=day&from=${range.from}&to=${range.to}`,
      render: renderDays,
    },
    {
      label: "部门积压",
      query: () => "group_by=department",
      render: renderDepartments,
      placeholder: "department-table",
    },
    {
      label: "事项积压",
      query: () => "group_by=item",
      render: renderItems,
      placeholder: "item-table",
    },
  ];

  let rangeDays = 30;
  let lastSuccess = null;
  let lastAttempt = 0;
  let running = false;
  let timer = null;

  function showStatus(failures, attemptedAt) {
    const banner = $("error-banner");
    const freshness = $("freshness");
    if (lastSuccess) setText("last-updated", clockFormat.format(lastSuccess));
    $("status-dot").className = failures.length ? "dot bad" : "dot ok";
    freshness.classList.toggle("stale", failures.length > 0);
    if (!failures.length) {
      banner.hidden = true;
      banner.textContent = "";
      return;
    }
    // One line per distinct reason: when the server is down, all four fail alike.
    const byReason = new Map();
    for (const { section, reason } of failures) {
      byReason.set(reason, [...(byReason.get(reason) || []), section.label]);
      if (!section.shown && section.placeholder) showPlaceholder(section.placeholder, "获取失败");
    }
    const reasons = [...byReason].map(([reason, labels]) =>
      labels.length === sections.length ? `全部数据 ${reason}` : `${labels.join("、")} ${reason}`,
    );
    const kept = lastSuccess
      ? `页面保留 ${timeFormat.format(lastSuccess)} 成功获取的数字，`
      : "暂时没有可显示的数据，";
    banner.textContent =
      `⚠ 数据获取失败（${timeFormat.format(attemptedAt)}）：${reasons.join("；")}。` +
      `${kept}${REFRESH_MS / 1000} 秒后自动重试。`;
    banner.hidden = false;
  }

  function showPlaceholder(tableId, message) {
    const row = $(tableId).tBodies[0].rows[0];
    if (row && row.classList.contains("empty")) row.cells[0].textContent = message;
  }

  async function refresh() {
    if (running) return;
    running = true;
    clearTimeout(timer);
    lastAttempt = Date.now();
    const to = todayKey();
    const range = { from: addDays(to, -(rangeDays - 1)), to };
    const controller = new AbortController();
    const abortTimer = setTimeout(() => controller.abort(), TIMEOUT_MS);
    const failures = [];
    try {
      const results = await Promise.allSettled(
        sections.map((s) => fetchJson(s.query(range), controller.signal)),
      );
      results.forEach((result, index) => {
        const section = sections[index];
        if (result.status === "rejected") {
          failures.push({ section, reason: result.reason.message });
          return;
        }
        try {
          section.render(result.value, range);
          section.shown = true;
        } catch (error) {
          console.error(error);
          failures.push({ section, reason: `显示出错（${error.message}）` });
        }
      });
    } finally {
      clearTimeout(abortTimer);
      const attemptedAt = new Date();
      if (!failures.length) lastSuccess = attemptedAt;
      showStatus(failures, attemptedAt);
      running = false;
      timer = setTimeout(refresh, REFRESH_MS);
    }
  }

  for (const button of document.querySelectorAll(".range button")) {
    button.addEventListener("click", () => {
      rangeDays = Number(button.dataset.days);
      for (const b of document.querySelectorAll(".range button")) {
        b.classList.toggle("active", b === button);
      }
      setText("range-days", String(rangeDays));
      refresh();
    });
  }

  // Background tabs throttle timers: catch up as soon as the page is looked at again.
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && Date.now() - lastAttempt > REFRESH_MS) refresh();
  });

  refresh();
})();
