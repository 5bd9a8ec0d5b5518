// Live monitor: calls in progress with their transcripts, fed by Server-Sent Events.
//
// The server first sends a "snapshot" (every call in progress with its events so far),
// then each call event as it happens. EventSource reconnects by itself; each new
// connection starts with a fresh snapshot, so the page never shows a stale call.
// All text goes in with textContent: transcripts are caller speech, never markup.
"use strict";

(() => {
  const activeList = document.getElementById("active-calls");
  const recentList = document.getElementById("recent-calls");
  const activeEmpty = document.getElementById("active-empty");
  const recentEmpty = document.getElementById("recent-empty");
  const statusEl = document.getElementById("connection-status");
  const activeCount = document.getElementById("active-count");
  if (!activeList || !recentList) return;

  const MAX_RECENT = 10;
  const calls = new Map(); // call_id -> state

  const ACTIONS = {
    answer: "回答",
    confirm: "確認",
    redirect: "他の窓口を案内",
    transfer: "職員へ転送",
    repeat: "くり返し",
    choose: "どちらかの確認",
    filler: "お待ちください",
    failure: "おわび",
    goodbye: "終了のあいさつ",
    reprompt: "聞き直し",
    hold: "お客様をお待ちする",
    not_a_tax: "市税以外のご案内",
    resume: "お聞きしていることのお伝え",
  };
  const KINDS = {
    greeting: "あいさつ",
    answer: "回答",
    confirm: "確認",
    reprompt: "聞き直し",
    transfer: "転送のご案内",
    redirect: "窓口のご案内",
    goodbye: "終了",
    silent_line: "無音のため終了",
    apology: "おわび",
    repeat: "くり返し",
    choose: "どちらかの確認",
    filler: "お待ちください",
    hold: "お客様をお待ちする",
    hold_over: "ご準備の確認",
    not_a_tax: "市税以外のご案内",
    resume: "お聞きしていることのお伝え",
    failure: "おわび",
  };
  const OUTCOMES = {
    completed: "自動応答で完了",
    transferred: "職員へ転送",
    hung_up: "お客様が終話",
    hung_up_waiting: "切断（待ち時間中）",
    error: "障害で終了",
    abandoned: "切断（障害）",
  };
  const TRANSPORTS = { sip: "電話", webrtc: "テスト電話（ブラウザ）", recording: "録音の再生（試験）" };
  // FAQ id -> title, embedded by the page (the bot's current FAQ).
  const titlesEl = document.getElementById("faq-titles");
  const TITLES = titlesEl ? JSON.parse(titlesEl.textContent || "{}") : {};

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function clock(wallTime) {
    const d = new Date(wallTime * 1000);
    return d.toLocaleTimeString("ja-JP", {
      timeZone: "Asia/Tokyo", // the hotline's time, whatever the viewer's computer says
      hour: "2-digit",
      minute: "2-digit",
      second: "2-digit",
    });
  }

  function duration(seconds) {
    const s = Math.max(0, Math.round(seconds));
    const m = Math.floor(s / 60);
    return m > 0 ? `${m}分${String(s % 60).padStart(2, "0")}秒` : `${s}秒`;
  }

  function setStatus(text, ok) {
    if (!statusEl) return;
    statusEl.textContent = text;
    statusEl.classList.toggle("is-ok", ok);
    statusEl.classList.toggle("is-down", !ok);
  }

  function refreshEmpty() {
    activeEmpty.hidden = activeList.children.length > 0;
    recentEmpty.hidden = recentList.children.length > 0;
    if (activeCount) activeCount.textContent = String(activeList.children.length);
  }

  function createCall(callId, wallTime) {
    const card = el("article", "call-card");
    card.dataset.callId = callId;
    const head = el("header", "call-head");
    const title = el("h3", "call-title", `通話 ${callId.slice(-8)}`);
    title.title = callId;
    const meta = el("span", "call-meta");
    const speaking = el("span", "call-speaking", "お客様が話しています…");
    speaking.hidden = true;
    const outcome = el("span", "call-outcome");
    outcome.hidden = true;
    head.append(title, meta, speaking, outcome);
    const lines = el("ol", "transcript");
    lines.setAttribute("aria-live", "polite");
    card.append(head, lines);
    const state = {
      card,
      meta,
      speaking,
      outcome,
      lines,
      interim: null,
      seen: new Set(),
      started: wallTime,
      transport: "",
      caller: "",
      ended: false,
    };
    calls.set(callId, state);
    activeList.prepend(card);
    refreshEmpty();
    return state;
  }

  function updateMeta(state) {
    const parts = [];
    if (state.started) parts.push(`${clock(state.started)} 開始`);
    if (!state.ended && state.started) parts.push(`経過 ${duration(Date.now() / 1000 - state.started)}`);
    if (state.transport) parts.push(TRANSPORTS[state.transport] || state.transport);
    if (state.caller) parts.push(state.caller);
    state.meta.textContent = parts.join("・");
  }

  function addLine(state, className, who, text, extra) {
    const li = el("li", `line ${className}`);
    if (who) li.append(el("span", "who", who));
    li.append(el("span", "text", text));
    if (extra) li.append(el("span", "extra", extra));
    if (state.interim && state.interim.parentNode) state.lines.insertBefore(li, state.interim);
    else state.lines.append(li);
    state.lines.scrollTop = state.lines.scrollHeight;
    return li;
  }

  function apply(ev) {
    if (!ev || !ev.call_id) return;
    let state = calls.get(ev.call_id);
    if (state && ev.seq !== undefined && ev.seq !== null) {
      if (state.seen.has(ev.seq)) return; // already shown (snapshot overlap)
    }
    if (!state) {
      if (ev.event === "call_ended") return; // ended before we ever saw it
      state = createCall(ev.call_id, ev.event === "call_started" ? ev.wall_time : null);
    }
    if (ev.seq !== undefined && ev.seq !== null) state.seen.add(ev.seq);
    if (!state.started && ev.wall_time && ev.t_ms !== undefined) {
      state.started = ev.wall_time - ev.t_ms / 1000;
    }
    switch (ev.event) {
      case "call_started":
        state.started = ev.wall_time;
        state.transport = ev.transport || "";
        state.caller = ev.caller || "";
        break;
      case "caller_speech_started":
        state.speaking.hidden = false;
        break;
      case "caller_speech_ended":
        state.speaking.hidden = true;
        break;
      case "recognized": {
        const text = ev.text || "";
        if (ev.final) {
          if (state.interim) state.interim.remove();
          state.interim = null;
          addLine(state, "caller", "お客様", text || "（聞き取れませんでした）");
        } else {
          if (!state.interim) {
            state.interim = el("li", "line caller interim");
            state.interim.append(el("span", "who", "お客様"), el("span", "text"));
            state.lines.append(state.interim);
          }
          state.interim.querySelector(".text").textContent = `${text}…`;
        }
        break;
      }
      case "intent_decided": {
        const action = ACTIONS[ev.action] || ev.action;
        const bits = [`判定：${action}`];
        if (ev.faq_id) bits.push(TITLES[ev.faq_id] ? `${TITLES[ev.faq_id]}（${ev.faq_id}）` : ev.faq_id);
        if (typeof ev.score === "number") bits.push(`信頼度 ${ev.score.toFixed(2)}`);
        const li = addLine(state, `decision action-${ev.action}`, "", bits.join("　"));
        li.dataset.faqId = ev.faq_id || "";
        li.dataset.action = ev.action || "";
        break;
      }
      case "bot_speech_started": {
        const kind = KINDS[ev.kind] || ev.kind || "";
        const extra =
          typeof ev.latency_ms === "number" ? `応答まで ${Math.round(ev.latency_ms)} ms` : "";
        addLine(state, `bot kind-${ev.kind}`, `ボット（${kind}）`, ev.text || "", extra);
        break;
      }
      case "bot_speech_stopped":
        if (ev.barged_in) addLine(state, "marker", "", "お客様が話し始めたため、ボットの発話を止めました");
        break;
      case "transfer_requested":
        addLine(
          state,
          "marker transfer",
          "",
          `職員への転送を開始しました（理由：${ev.reason || "不明"}）`,
        );
        break;
      case "transfer_answered":
        addLine(state, "marker transfer", "", "職員が応答しました");
        break;
      case "transfer_failed":
        addLine(state, "marker error", "", `転送できませんでした${ev.reason ? `（${ev.reason}）` : ""}`);
        break;
      case "error":
        addLine(state, "marker error", "", `部品の不具合：${ev.component || ""}`);
        break;
      case "call_ended":
        endCall(state, ev);
        break;
      default:
        break;
    }
    updateMeta(state);
  }

  function endCall(state, ev) {
    state.ended = true;
    state.speaking.hidden = true;
    if (state.interim) state.interim.remove();
    state.interim = null;
    const label = OUTCOMES[ev.outcome] || ev.outcome || "終了";
    const length = typeof ev.duration_ms === "number" ? `（${duration(ev.duration_ms / 1000)}）` : "";
    state.outcome.textContent = `${label}${length}`;
    state.outcome.hidden = false;
    state.card.classList.add("is-ended", `outcome-${ev.outcome}`);
    recentList.prepend(state.card);
    while (recentList.children.length > MAX_RECENT) {
      const last = recentList.lastElementChild;
      calls.delete(last.dataset.callId);
      last.remove();
    }
    refreshEmpty();
  }

  function applySnapshot(snapshot) {
    // A new connection: calls in progress are rebuilt from the server's state; ended
    // calls already on the page stay in the recent list.
    for (const [callId, state] of calls) {
      if (!state.ended) {
        state.card.remove();
        calls.delete(callId);
      }
    }
    for (const call of snapshot.calls || []) {
      for (const ev of call.events || []) apply(ev);
    }
    refreshEmpty();
  }

  function connect() {
    const source = new EventSource("/api/monitor/events");
    source.addEventListener("open", () => setStatus("接続中（リアルタイム表示）", true));
    source.addEventListener("snapshot", (e) => applySnapshot(JSON.parse(e.data)));
    source.addEventListener("call", (e) => apply(JSON.parse(e.data)));
    source.addEventListener("error", () => {
      setStatus("接続が切れました。再接続しています…", false);
      if (source.readyState === EventSource.CLOSED) {
        // The server refused (e.g. logged out or restarting): try again in a while.
        source.close();
        setTimeout(connect, 5000);
      }
    });
  }

  setInterval(() => {
    for (const state of calls.values()) if (!state.ended) updateMeta(state);
  }, 1000);
  refreshEmpty();
  connect();
})();
