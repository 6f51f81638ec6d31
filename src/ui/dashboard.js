// The dashboard: polls the /v1 API every 2 seconds and renders the queue, the compiles and the banks. Plain browser
// JavaScript, no build step. Text from the service is only ever set as textContent (never parsed as HTML); the API
// token lives in sessionStorage and travels only in the Authorization header.
"use strict"
;(() => {
  const POLL_MS = 2000
  const HISTORY_LIMIT = 50
  const BANKS_PAGE = 25
  const WINDOW_MS = 10 * 60 * 1000
  const TOKEN_KEY = "effect-compile-trigger.apiToken"

  const $ = (id) => document.getElementById(id)

  // ---- the API, with the token ----

  class AuthError extends Error {}

  const token = {
    get: () => sessionStorage.getItem(TOKEN_KEY),
    set: (value) => sessionStorage.setItem(TOKEN_KEY, value),
    clear: () => sessionStorage.removeItem(TOKEN_KEY)
  }

  /** The parsed JSON answer; throws AuthError on 401, Error with the service's message otherwise. */
  const api = async (path, init = {}) => {
    const headers = { accept: "application/json", ...(init.headers ?? {}) }
    const given = token.get()
    if (given !== null) headers.authorization = `Bearer ${given}`
    const response = await fetch(path, { ...init, headers, cache: "no-store", credentials: "omit" })
    if (response.status === 401) throw new AuthError(given === null ? "missing" : "wrong")
    const text = await response.text()
    const body = text === "" ? null : (() => {
      try {
        return JSON.parse(text)
      } catch {
        return text
      }
    })()
    if (!response.ok) {
      const error = new Error(body?.message ?? `HTTP ${response.status}`)
      error.status = response.status
      throw error
    }
    return body
  }

  const query = (params) => {
    const search = new URLSearchParams()
    for (const [key, value] of Object.entries(params)) if (value !== undefined && value !== "") search.set(key, value)
    const text = search.toString()
    return text === "" ? "" : `?${text}`
  }

  // ---- formatting ----

  const number = (value) => (value === null || value === undefined ? "–" : Number(value).toLocaleString("en-US"))
  const time = (iso) => (iso === null || iso === undefined ? "never" : new Date(iso).toLocaleTimeString("en-GB"))
  // Swedish order is ISO order: 2026-12-02 00:56:34, in the browser's time zone.
  const dateTime = (iso) => (iso === null || iso === undefined ? "never" : new Date(iso).toLocaleString("sv-SE"))
  /** The time alone for today, with the date otherwise. */
  const when = (iso) =>
    iso === null || iso === undefined ? "never" : new Date(iso).toDateString() === new Date().toDateString() ? time(iso) : dateTime(iso)
  const duration = (ms) =>
    ms < 1000 ? `${Math.max(0, Math.round(ms))} ms` : ms < 60_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`
  const rate = (value) => (value === undefined ? "–" : value < 10 ? value.toFixed(2) : Math.round(value).toLocaleString("en-US"))

  const cell = (text, className) => {
    const td = document.createElement("td")
    td.textContent = text
    if (className) td.className = className
    return td
  }

  const badge = (text, kind) => {
    const span = document.createElement("span")
    span.className = `badge ${kind ?? text}`
    span.textContent = text
    return span
  }

  const bankLink = (bankId) => {
    const button = document.createElement("button")
    button.type = "button"
    button.className = "link"
    button.textContent = bankId
    // A long id is cut short with an ellipsis (dashboard.css); the whole id on hover.
    button.title = bankId
    button.addEventListener("click", () => lookUp(bankId))
    return button
  }

  const fill = (table, rows, empty) => {
    const body = $(table).querySelector("tbody")
    body.replaceChildren(...rows)
    if (empty) $(empty).hidden = rows.length > 0
  }

  const row = (...cells) => {
    const tr = document.createElement("tr")
    for (const content of cells) {
      if (content instanceof HTMLTableCellElement) tr.append(content)
      else {
        const td = document.createElement("td")
        td.append(content)
        tr.append(td)
      }
    }
    return tr
  }

  const took = (record) => duration(Date.parse(record.endedAt) - Date.parse(record.startedAt))

  // ---- state ----

  const ui = {
    lookup: null, // the bank id looked up
    banksCursors: [undefined], // cursor of each page seen; the last is the current page's
    banksNext: null,
    samples: [], // [millis, retains total, compiles total]
    running: [],
    budget: true, // false once GET /v1/budget answered 404
    cluster: false, // a runner of a cluster (see renderScope)
    defaults: null, // the settings a bank without a policy follows (`/v1/queue`'s `defaults`)
    budgetPeriodSeconds: null, // once GET /v1/budget answered
    chart: null,
    timer: undefined
  }

  // ---- the queue and the rates ----

  const renderQueue = (queue) => {
    $("q-size").textContent = number(queue.size)
    $("q-capacity").textContent = queue.capacity === null ? "unbounded queue" : `of ${number(queue.capacity)}`
    $("q-pending").textContent = number(queue.pending)
    $("q-running").textContent = number(queue.running)
    $("q-banks").textContent = number(queue.banks)
    ui.defaults = queue.defaults
    renderScope(queue.mode === "cluster")
    renderStore(queue.store)
    renderFreshness(queue.freshness ?? null)
  }

  /** Seconds as "42 s", "3.5 min", "2.1 h", "1.5 d"; a negative figure is a lateness. */
  const age = (seconds) => {
    const s = Math.abs(seconds)
    const text = s < 120 ? `${Math.round(s)} s` : s < 7200 ? `${(s / 60).toFixed(1)} min` : s < 172_800 ? `${(s / 3600).toFixed(1)} h` : `${(s / 86_400).toFixed(1)} d`
    return seconds < 0 ? `${text} late` : text
  }

  /** The freshness panel (`/v1/queue`'s `freshness`; none in cluster mode): ages now and the banks nearest their deadline. */
  const renderFreshness = (freshness) => {
    $("freshness").hidden = freshness === null
    if (freshness === null) return
    $("fresh-max").textContent = freshness.banksWaiting === 0 ? "–" : age(freshness.oldestSeconds)
    $("fresh-waiting").textContent = `${number(freshness.banksWaiting)} ${freshness.banksWaiting === 1 ? "bank" : "banks"} with uncompiled memories`
    $("fresh-p50").textContent = freshness.banksWaiting === 0 ? "–" : age(freshness.p50Seconds)
    $("fresh-p95").textContent = freshness.banksWaiting === 0 ? "–" : age(freshness.p95Seconds)
    $("fresh-overdue").textContent = number(freshness.overdue)
    $("fresh-overdue").className = freshness.overdue > 0 ? "figure small error-text" : "figure small"
    const lanes = freshness.lanes
    $("fresh-lanes").textContent = `queued: ${number(lanes.urgent)} urgent, ${number(lanes.deadline)} deadline, ${number(lanes.ordinary)} ordinary`
    fill("fresh-closest", freshness.closestToDeadline.map((bank) =>
      row(bankLink(bank.bankId), badge(bank.status), dateTime(bank.oldestMemoryAt), dateTime(bank.deadlineAt),
        cell(age(bank.secondsLeft), bank.secondsLeft < 0 ? "error" : ""))
    ))
    $("fresh-closest").hidden = freshness.closestToDeadline.length === 0
  }

  /** The write-behind: healthy or failing, what a crash now would lose, and since when it fails. */
  const renderStore = (store) => {
    $("store-card").hidden = store === null || store === undefined
    $("store-alert").hidden = store == null || store.healthy
    if (store == null) return
    $("store-state").textContent = store.healthy ? "healthy" : "failing"
    $("store-state").className = store.healthy ? "figure" : "figure error-text"
    const unflushed = `${number(store.unflushed)} unflushed`
    $("store-detail").textContent = store.unflushed === 0 ? "every change stored" : `${unflushed}, oldest ≤ ${
      Math.ceil(store.oldestUnflushedSeconds)
    } s`
    $("store-detail").className = store.healthy ? "sub" : "sub warn"
    if (!store.healthy) {
      $("store-alert").textContent = `The store has failed since ${
        new Date(store.unhealthySince).toLocaleTimeString("en-GB")
      } (${number(store.consecutiveFailures)} flushes in a row): ${unflushed} changes are only in memory and would be ` +
        `lost by a crash. Last error: ${store.lastError}`
    }
  }

  /** A counter's value in Prometheus text: the sum of its series. */
  const counter = (text, name) => {
    let total = 0
    const pattern = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)`, "gm")
    for (const match of text.matchAll(pattern)) total += Number(match[1])
    return total
  }

  /** The rate per `unitMs` over the last `spanMs` of samples ending at `i`. */
  const rateAt = (i, column, spanMs, unitMs) => {
    const end = ui.samples[i]
    let j = i
    while (j > 0 && end[0] - ui.samples[j - 1][0] <= spanMs) j--
    if (j === i) return undefined
    const start = ui.samples[j]
    return Math.max(0, end[column] - start[column]) / ((end[0] - start[0]) / unitMs)
  }

  /**
   * In cluster mode (`/v1/queue`'s `mode`) the queue, the banks and the compiles are the whole cluster's (the node
   * asks every partition), but /metrics — the rates and the chart — and the budget's buckets are this node's: say so.
   */
  const renderScope = (cluster) => {
    ui.cluster = cluster
    const node = ui.cluster ? ", this node" : ""
    $("rate-retains-scope").textContent = `last 10 s${node}`
    $("rate-compiles-scope").textContent = `last 60 s${node}`
    $("q-banks-scope").textContent = ui.cluster ? "in the whole cluster" : "known to the service"
    $("chart-scope").textContent = `${ui.cluster ? "this node's, " : ""}since this page opened (up to 10 minutes)`
    renderBudgetPeriod()
  }

  const recordRates = async () => {
    const text = await api("/metrics", { headers: { accept: "text/plain" } })
    const now = Date.now()
    ui.samples.push([now, counter(text, "compile_trigger_retains_total"), counter(text, "compile_trigger_compiles_total")])
    while (ui.samples.length > 0 && now - ui.samples[0][0] > WINDOW_MS) ui.samples.shift()
    const last = ui.samples.length - 1
    $("rate-retains").textContent = rate(rateAt(last, 1, 10_000, 1000))
    $("rate-compiles").textContent = rate(rateAt(last, 2, 60_000, 60_000))
    drawChart()
  }

  // The time axis steps in whole seconds (its labels show seconds), and spans at least a minute: a fresh page's few
  // samples, seconds apart, would otherwise get sub-second steps, every label the same second.
  const TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600]
  const MIN_SPAN_SECONDS = 60
  const timeRange = (_, min, max) => {
    const end = max ?? Date.now() / 1000
    return [Math.min(min ?? end, end - MIN_SPAN_SECONDS), end]
  }

  /** The time axis's labels; kept on the chart's element too, since the canvas holds them only as pixels. */
  const timeLabels = (splits) => {
    const labels = splits.map((seconds) => new Date(seconds * 1000).toLocaleTimeString("en-GB"))
    $("chart").dataset.timeLabels = labels.join(" ")
    return labels
  }

  const drawChart = () => {
    if (typeof uPlot === "undefined") return
    const times = [], retains = [], compiles = []
    ui.samples.forEach((sample, i) => {
      times.push(sample[0] / 1000)
      retains.push(rateAt(i, 1, 10_000, 1000) ?? null)
      compiles.push(rateAt(i, 2, 60_000, 60_000) ?? null)
    })
    const data = [times, retains, compiles]
    const width = Math.max(300, $("chart").clientWidth)
    if (ui.chart === null) {
      ui.chart = new uPlot({
        width,
        height: 220,
        series: [
          {},
          { label: "retains/s", stroke: "#2563eb", width: 2, scale: "retains", value: (_, v) => (v === null ? "–" : rate(v)) },
          { label: "compiles/min", stroke: "#d97706", width: 2, scale: "compiles", value: (_, v) => (v === null ? "–" : rate(v)) }
        ],
        scales: {
          x: { time: true, range: timeRange },
          retains: { range: (_, min, max) => [0, Math.max(1, max)] },
          compiles: { range: (_, min, max) => [0, Math.max(1, max)] }
        },
        axes: [
          { space: 100, incrs: TIME_STEPS, values: (_, splits) => timeLabels(splits) },
          { scale: "retains", label: "retains/s" },
          { scale: "compiles", side: 1, label: "compiles/min", grid: { show: false } }
        ]
      }, data, $("chart"))
    } else {
      if (ui.chart.width !== width) ui.chart.setSize({ width, height: 220 })
      ui.chart.setData(data)
    }
  }

  // ---- compiles ----

  const renderRunning = () => {
    const now = Date.now()
    fill("running", ui.running.map((run) =>
      row(bankLink(run.bankId), run.reason, String(run.attempt), number(run.memories), cell(duration(now - Date.parse(run.startedAt)), "elapsed"))
    ), "running-empty")
  }

  const historyRow = (record, withBank) => {
    const cells = [cell(when(record.endedAt))]
    if (withBank) cells.push(bankLink(record.bankId))
    cells.push(record.reason, badge(record.outcome), took(record), number(record.memories))
    if (withBank) cells.push(number(record.forgets), number(record.tokensUsed))
    cells.push(cell(record.error ?? "", "error"))
    return row(...cells)
  }

  const BANK_ID = /^[A-Za-z0-9._:-]{1,200}$/

  const refreshCompiles = async () => {
    const typed = $("history-bank").value.trim()
    const bankId = BANK_ID.test(typed) ? typed : ""
    const [all, filtered] = await Promise.all([
      api(`/v1/compiles${query({ limit: 1 })}`),
      api(`/v1/compiles${query({ limit: HISTORY_LIMIT, bankId, outcome: $("history-outcome").value })}`)
    ])
    ui.running = all.running
    renderRunning()
    fill("history", filtered.compiles.map((record) => historyRow(record, true)))
    $("history-empty").hidden = filtered.compiles.length > 0
    $("history-empty").textContent = all.compiles.length === 0 ? "No compile has finished yet." : "No compile matches the filter."
    $("history-bank").classList.toggle("invalid", typed !== "" && bankId === "")
  }

  // ---- budget (shown only when the service has one) ----

  const el = (tag, className, text) => {
    const element = document.createElement(tag)
    if (className) element.className = className
    if (text !== undefined) element.textContent = text
    return element
  }

  const period = (seconds) =>
    seconds % 86_400 === 0 ? `${seconds / 86_400} d` : seconds % 3600 === 0 ? `${seconds / 3600} h` : seconds % 60 === 0 ? `${seconds / 60} min` : `${seconds} s`

  /** One global bucket: its level of its capacity, a bar, and when it lets the next compile start or is full. */
  const bucketLevel = (name, bucket, spent) => {
    const level = el("div", "level")
    level.dataset.bucket = name
    level.append(el("span", "label", name))
    level.append(el("span", "figure small", `${number(Math.floor(bucket.available))} / ${number(bucket.capacity)}`))
    const bar = el("div", "bar")
    const fillBar = el("span", spent ? "spent" : "")
    fillBar.style.width = `${Math.max(0, Math.min(100, (100 * bucket.available) / bucket.capacity))}%`
    bar.append(fillBar)
    level.append(bar)
    const now = Date.now()
    level.append(el("span", spent ? "sub warn" : "sub",
      spent
        ? `spent: next compile at ${when(bucket.nextStartAt)}`
        : Date.parse(bucket.fullAt) <= now ? "full" : `full again at ${when(bucket.fullAt)}`))
    return level
  }

  const renderBudgetPeriod = () => {
    if (ui.budgetPeriodSeconds === null) return
    $("budget-period").textContent =
      `${ui.cluster ? "this node's buckets, " : ""}refilled continuously over ${period(ui.budgetPeriodSeconds)}`
  }

  const renderBudget = (budget) => {
    const levels = []
    if (budget.tokens !== null) levels.push(bucketLevel("tokens", budget.tokens, budget.tokens.available <= 0))
    if (budget.compiles !== null) levels.push(bucketLevel("compiles", budget.compiles, budget.compiles.available < 1))
    const perBank = el("div", "level")
    perBank.dataset.bucket = "per bank"
    perBank.append(el("span", "label", "per bank"))
    perBank.append(el("span", "figure small", budget.bankTokens === null ? "no default limit" : `${number(budget.bankTokens)} tokens`))
    perBank.append(el("span", "sub", `${number(budget.waiting)} waiting for the budget, ${number(budget.deferredCount)} deferred`))
    levels.push(perBank)
    ui.budgetPeriodSeconds = budget.periodSeconds
    renderBudgetPeriod()
    $("budget-levels").replaceChildren(...levels)
    fill("budget-deferred", budget.deferred.slice(0, 10).map((bank) =>
      row(bankLink(bank.bankId), `${number(Math.floor(bank.tokensAvailable))} / ${number(bank.capacity)}`, when(bank.dueAt))
    ))
    $("budget-deferred").hidden = budget.deferred.length === 0
  }

  const refreshBudget = async () => {
    if (ui.budget === false) return
    let budget
    try {
      budget = await api("/v1/budget")
    } catch (error) {
      // A service without budgets at all (an older one): no panel, and no more asking.
      if (error.status === 404) {
        ui.budget = false
        $("budget").hidden = true
        return
      }
      throw error
    }
    const set = budget.tokens !== null || budget.compiles !== null || budget.bankTokens !== null || budget.deferredCount > 0
    $("budget").hidden = !set
    if (set) renderBudget(budget)
  }

  // ---- one bank ----

  const facts = (list, entries) => {
    $(list).replaceChildren(...entries.flatMap(([term, value]) => {
      const dt = document.createElement("dt")
      dt.textContent = term
      const dd = document.createElement("dd")
      dd.textContent = value
      return [dt, dd]
    }))
  }

  /** The most dirty scopes the panel lists; the rest are counted. */
  const SCOPES_SHOWN = 20

  /** A bank's dirty scopes (`dirtyScopes` of its state): each with the memories and forgets that named it. */
  const scopeFacts = (dirty) => {
    if (dirty === undefined) return [["scopes", "none named since the last compile"]]
    if (dirty.all) return [["all scopes", "more distinct scopes than the per-bank limit: the next compile rebuilds all"]]
    const shown = dirty.scopes.slice(0, SCOPES_SHOWN).map((entry) =>
      [entry.scope, `${number(entry.memories)} memories, ${number(entry.forgets)} forgets`]
    )
    const rest = dirty.scopes.length - shown.length
    return rest > 0 ? [...shown, ["…", `and ${number(rest)} more`]] : shown
  }

  const SETTINGS = ["enabled", "sizeThreshold", "stalenessDays", "stalenessMinMemories", "forgetThreshold", "forgetDelaySeconds"]

  /**
   * Each setting in force for the bank: its value, marked "own" (set by its policy) or "default" (the service's).
   * Without a policy every setting is the service's default (`/v1/queue`'s `defaults`).
   */
  const policyFacts = (policy) =>
    policy === null
      ? SETTINGS.map((key) => [key, ui.defaults === null ? "default" : `${String(ui.defaults[key])} (default)`])
      : SETTINGS.map((key) => [key, `${String(policy.effective[key])} (${policy.policy[key] === undefined ? "default" : "own"})`])

  const refreshLookup = async () => {
    const bankId = ui.lookup
    if (bankId === null) return
    let state
    try {
      state = await api(`/v1/banks/${encodeURIComponent(bankId)}`)
    } catch (error) {
      if (error instanceof AuthError) throw error
      $("lookup-result").hidden = true
      $("lookup-message").hidden = false
      $("lookup-message").textContent = error.status === 404 ? `No bank "${bankId}": the service never saw it.` : error.message
      return
    }
    const [policy, compiles] = await Promise.all([
      // The state says whether it has a policy; only then is there an effective config to read (no 404 otherwise).
      state.policy === null
        ? null
        : api(`/v1/banks/${encodeURIComponent(bankId)}/policy`).catch((error) => {
          if (error.status === 404) return null
          throw error
        }),
      api(`/v1/compiles${query({ bankId, limit: 10 })}`)
    ])
    if (ui.lookup !== bankId) return
    $("lookup-message").hidden = true
    $("lookup-result").hidden = false
    $("lookup-id").textContent = state.bankId
    $("lookup-id").title = state.bankId
    const status = $("lookup-status")
    status.textContent = state.status
    status.className = `badge ${state.status}`
    renderNextCompile(state.nextCompile ?? null)
    facts("lookup-state", [
      ["oldest uncompiled memory", state.oldestMemoryAt == null ? "none" : dateTime(state.oldestMemoryAt)],
      ["deadline", state.deadlineAt == null ? "none" : dateTime(state.deadlineAt)],
      ["memories since last compile", number(state.memoriesSinceLastCompile)],
      ["forgets since last compile", number(state.forgetsSinceLastCompile)],
      ["last compile", dateTime(state.lastCompileAt)],
      ["first retain", dateTime(state.firstRetainAt)],
      ["consecutive failures", number(state.consecutiveFailures)],
      ["last error", state.lastError ?? "none"]
    ])
    facts("lookup-policy", policyFacts(policy))
    facts("lookup-scopes", scopeFacts(state.dirtyScopes))
    fill("lookup-compiles", compiles.compiles.map((record) => historyRow(record, false)))
  }

  const noun = (rule) =>
    rule.rule === "forget" ? (rule.moreNeeded === 1 ? "forget" : "forgets") : rule.moreNeeded === 1 ? "memory" : "memories"

  /** When the bank compiles next and why (`nextCompile`; none in cluster mode): the sentence, then each rule. */
  const renderNextCompile = (next) => {
    $("lookup-next").hidden = next === null
    $("lookup-rules").hidden = next === null || next.rules.length === 0
    if (next === null) return
    $("lookup-next").textContent = `Next compile: ${next.message}`
    $("lookup-next").className = ["parked", "queue_full", "disabled"].includes(next.state) ? "next-compile warn" : "next-compile"
    facts("lookup-rules", next.rules.map((rule) => [
      `${rule.rule}${next.next !== null && next.next.rule === rule.rule ? " (first)" : ""}`,
      rule.at !== null && (rule.moreNeeded ?? 0) === 0
        ? `at ${dateTime(rule.at)}`
        : `after ${number(rule.moreNeeded)} more ${noun(rule)}${rule.at === null ? "" : `, not before ${dateTime(rule.at)}`}`
    ]))
  }

  const lookUp = (bankId) => {
    ui.lookup = bankId
    $("lookup-input").value = bankId
    $("compile-message").textContent = ""
    refreshLookup().catch(handleError)
  }

  const compileNow = async () => {
    const bankId = ui.lookup
    if (bankId === null) return
    const state = await api(`/v1/banks/${encodeURIComponent(bankId)}/compile`, { method: "POST" })
    $("compile-message").textContent = `asked at ${time(new Date().toISOString())}: ${state.status}`
    await refreshLookup()
  }

  // ---- banks, page by page ----

  const refreshBanks = async () => {
    const cursor = ui.banksCursors[ui.banksCursors.length - 1]
    const page = await api(`/v1/banks${query({ status: $("banks-status").value, limit: BANKS_PAGE, cursor })}`)
    ui.banksNext = page.nextCursor
    fill("banks", page.banks.map((state) =>
      row(
        bankLink(state.bankId),
        badge(state.status),
        number(state.memoriesSinceLastCompile),
        number(state.forgetsSinceLastCompile),
        dateTime(state.lastCompileAt),
        number(state.consecutiveFailures),
        cell(state.lastError ?? "", "error")
      )
    ), "banks-empty")
    $("banks-empty").textContent = $("banks-status").value === "" && ui.banksCursors.length === 1
      ? "No bank yet: retains create them."
      : "No bank on this page."
    $("banks-prev").disabled = ui.banksCursors.length === 1
    $("banks-next").disabled = page.nextCursor === null
    $("banks-page").textContent = `page ${ui.banksCursors.length}`
  }

  // ---- the loop, and what a failure shows ----

  const notice = (text) => {
    $("notice").textContent = text ?? ""
    $("notice").hidden = text === undefined
  }

  const askForToken = (why) => {
    $("main").hidden = true
    $("auth").hidden = false
    $("sign-out").hidden = true
    $("live").dataset.state = "auth"
    $("live").textContent = "needs a token"
    $("auth-message").textContent = why === "wrong"
      ? "Wrong API token: the service refused it (401). Enter the token the service was started with (API_TOKEN)."
      : "This service requires an API token (API_TOKEN). Enter it to see the dashboard."
    $("auth-message").className = why === "wrong" ? "error-text" : ""
    $("token-input").focus()
  }

  const handleError = (error) => {
    if (error instanceof AuthError) {
      if (error.message === "wrong") token.clear()
      askForToken(error.message)
      return
    }
    $("live").dataset.state = "error"
    $("live").textContent = "not reachable"
    notice(`Cannot read the service: ${error.message}. Retrying every ${POLL_MS / 1000} s.`)
  }

  const refresh = async () => {
    clearTimeout(ui.timer)
    // A tab in the background asks nothing (the chart shows the gap); it catches up when shown again.
    if (document.hidden && ui.samples.length > 0) return
    try {
      const queue = await api("/v1/queue")
      $("auth").hidden = true
      $("main").hidden = false
      $("sign-out").hidden = token.get() === null
      renderQueue(queue)
      await Promise.all([refreshCompiles(), refreshBanks(), refreshLookup(), refreshBudget(), recordRates()])
      notice(undefined)
      $("live").dataset.state = "live"
      $("live").textContent = `live · ${new Date().toLocaleTimeString("en-GB")}`
    } catch (error) {
      handleError(error)
      if (error instanceof AuthError) return // wait for a token
    }
    ui.timer = setTimeout(refresh, POLL_MS)
  }

  // ---- wiring ----

  const onEnter = (input, action) => input.addEventListener("keydown", (event) => {
    if (event.key === "Enter") action()
  })

  const submitToken = () => {
    const value = $("token-input").value.trim()
    if (value === "") return
    token.set(value)
    $("token-input").value = ""
    refresh()
  }
  $("token-submit").addEventListener("click", submitToken)
  onEnter($("token-input"), submitToken)
  $("sign-out").addEventListener("click", () => {
    token.clear()
    clearTimeout(ui.timer)
    askForToken("missing")
  })

  const submitLookup = () => {
    const bankId = $("lookup-input").value.trim()
    if (bankId !== "") lookUp(bankId)
  }
  $("lookup-submit").addEventListener("click", submitLookup)
  onEnter($("lookup-input"), submitLookup)
  $("compile-now").addEventListener("click", () => compileNow().catch((error) => {
    if (error instanceof AuthError) return handleError(error)
    $("compile-message").textContent = error.message
  }))

  const refreshHistory = () => refreshCompiles().catch(handleError)
  $("history-outcome").addEventListener("change", refreshHistory)
  $("history-bank").addEventListener("input", refreshHistory)

  const restartBanks = () => {
    ui.banksCursors = [undefined]
    refreshBanks().catch(handleError)
  }
  $("banks-status").addEventListener("change", restartBanks)
  $("banks-next").addEventListener("click", () => {
    if (ui.banksNext === null) return
    ui.banksCursors.push(ui.banksNext)
    refreshBanks().catch(handleError)
  })
  $("banks-prev").addEventListener("click", () => {
    if (ui.banksCursors.length > 1) ui.banksCursors.pop()
    refreshBanks().catch(handleError)
  })

  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && $("auth").hidden) refresh()
  })
  // Elapsed times tick every second between polls.
  setInterval(renderRunning, 1000)
  window.addEventListener("resize", drawChart)
  refresh()
})()
