// 担当者コンソール: transferred calls ring here with the bot's summary; 応答 connects this
// browser's microphone to the caller (WebRTC), 終話 ends the call.
"use strict";

(() => {
  const root = document.getElementById("staff-console");
  if (!root) return;
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const iceServers = JSON.parse(root.dataset.iceServers || "[]");
  const list = document.getElementById("console-calls");
  const empty = document.getElementById("calls-empty");
  const count = document.getElementById("call-count");
  const statusEl = document.getElementById("console-status");
  const messageEl = document.getElementById("console-message");
  const audio = document.getElementById("caller-audio");
  const history = document.getElementById("history");
  const historyEmpty = document.getElementById("history-empty");

  const REASONS = {
    caller_request: "お客様が担当者との通話を希望されました",
    staff_topic: "職員による確認が必要なご相談です",
    not_understood: "ボットがご質問を聞き取れませんでした",
    failure: "システムの不具合のため転送しました",
    turn_limit: "やりとりが長くなったため転送しました",
    redirect_accepted: "他の窓口のご案内のあと、担当者を希望されました",
    shutdown: "システム停止のため転送しました",
    unknown: "転送理由は不明です",
  };
  const ACTIONS = {
    answer: "回答済み", confirm: "確認中", redirect: "他窓口を案内", transfer: "転送",
    repeat: "繰り返し", goodbye: "終了", reprompt: "聞き返し", no_input: "無音",
    failure: "障害", shutdown: "停止", choose: "選択肢を提示", out_of_hours: "時間外の案内",
    prompt: "ほかのご用件の確認", transfer_failed: "転送できず", silent_line: "無音のため終了",
    hold: "お客様をお待ちした", hold_over: "ご準備の確認", not_a_tax: "市税以外のご案内",
    resume: "「もしもし」への応答", staff_unreachable: "職員につながらない旨の案内",
  };
  const ENDINGS = {
    staff_ended: "通話が終了しました",
    staff_missed: "応答がなく、ボットに戻りました",
    staff_abandoned: "応答前にお客様が電話を切りました",
  };

  const calls = new Map(); // call_id -> call dict from the server
  let mine = null; // {callId, pc, mic}
  const baseTitle = document.title;
  let ringContext = null;
  let ringTimer = null;

  // A soft two-beep chime every 3 s while a call rings and this staff member is free, so
  // that a call is noticed with the page in a background tab. Browsers may hold the sound
  // until the page has been clicked once; the pulsing card and the title still show it.
  function chime() {
    try {
      ringContext = ringContext || new AudioContext();
    } catch (e) {
      return;
    }
    if (ringContext.state === "suspended") ringContext.resume().catch(() => {});
    const t = ringContext.currentTime;
    for (const start of [0, 0.45]) {
      const osc = ringContext.createOscillator();
      const gain = ringContext.createGain();
      osc.frequency.value = 880;
      gain.gain.setValueAtTime(0.0001, t + start);
      gain.gain.exponentialRampToValueAtTime(0.15, t + start + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, t + start + 0.3);
      osc.connect(gain).connect(ringContext.destination);
      osc.start(t + start);
      osc.stop(t + start + 0.32);
    }
  }

  function updateRinging(ringingCount) {
    document.title = ringingCount ? `【着信 ${ringingCount}件】${baseTitle}` : baseTitle;
    root.dataset.ringing = String(ringingCount);
    if (ringingCount && !mine) {
      if (!ringTimer) {
        chime();
        ringTimer = setInterval(chime, 3000);
      }
    } else if (ringTimer) {
      clearInterval(ringTimer);
      ringTimer = null;
    }
  }

  function message(text, kind) {
    messageEl.hidden = !text;
    messageEl.textContent = text || "";
    messageEl.className = `flash flash-${kind || "info"} console-message`;
  }

  function time(seconds) {
    return new Date(seconds * 1000).toLocaleTimeString("ja-JP", { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => {
      if (k === "class") node.className = v; else node.setAttribute(k, v);
    });
    children.flat().forEach((c) => node.append(c instanceof Node ? c : document.createTextNode(String(c ?? ""))));
    return node;
  }

  function turnRows(summary) {
    const turns = (summary && summary.turns) || [];
    if (!turns.length) return el("p", { class: "muted" }, "発言の記録はありません。");
    return el("table", { class: "turns" },
      el("thead", {}, el("tr", {}, el("th", {}, "お客様の発言（認識結果）"), el("th", {}, "ボットの判断"), el("th", {}, "候補のFAQと確からしさ"))),
      el("tbody", {}, turns.map((t) => el("tr", {},
        el("td", {}, t.heard || "（無音）"),
        el("td", {}, ACTIONS[t.action] || t.action || ""),
        el("td", {}, (t.candidates || []).map((c) =>
          el("span", { class: "cand" }, `${c.title || c.faq_id}`, el("span", { class: "score" }, `（${Math.round((c.score || 0) * 100)}%）`)))),
      ))));
  }

  function render() {
    list.textContent = "";
    const items = Array.from(calls.values()).sort((a, b) => a.ringing_since - b.ringing_since);
    empty.hidden = items.length > 0;
    count.textContent = `${items.length}件`;
    updateRinging(items.filter((c) => c.state === "ringing" || c.state === "answering").length);
    for (const call of items) {
      const summary = call.summary || {};
      const ringing = call.state === "ringing" || call.state === "answering";
      const isMine = mine && mine.callId === call.call_id;
      const stateText = ringing ? "着信中" : (isMine ? "通話中（あなた）" : `通話中（${call.answered_by || "担当者"}）`);
      const actions = el("div", { class: "actions" });
      if (ringing) {
        const answer = el("button", { type: "button", class: "primary answer-button", "data-call": call.call_id }, "応答");
        answer.disabled = !!mine;
        answer.addEventListener("click", () => answerCall(call.call_id));
        actions.append(answer);
      } else if (isMine) {
        const hangup = el("button", { type: "button", class: "danger hangup-button", "data-call": call.call_id }, "終話");
        hangup.addEventListener("click", () => hangUp(call.call_id));
        actions.append(hangup);
      }
      list.append(el("article", { class: "panel console-call", "data-state": ringing ? "ringing" : "connected", "data-call": call.call_id },
        el("header", {},
          el("h2", {}, summary.topic ? `ご用件：${summary.topic}` : "ご用件：（特定できませんでした）"),
          el("span", { class: "badge state-badge" }, stateText),
          el("span", { class: "muted" }, `${time(call.ringing_since)} 着信`)),
        el("dl", {},
          el("dt", {}, "転送の理由"), el("dd", { class: "reason" }, REASONS[summary.reason] || summary.reason || ""),
          el("dt", {}, "回線"), el("dd", {}, call.transport === "sip" ? "電話（SIP）" : "ブラウザ（テスト電話）")),
        turnRows(summary),
        actions));
    }
  }

  function addHistory(event) {
    historyEmpty.hidden = true;
    const topic = (event.summary && event.summary.topic) || "ご用件不明";
    history.prepend(el("li", {}, `${time(event.wall_time)}　${topic}：${ENDINGS[event.event] || event.event}`));
  }

  function closeMine() {
    if (!mine) return;
    if (mine.mic) mine.mic.getTracks().forEach((t) => t.stop());
    try { mine.pc.close(); } catch (e) { /* closed */ }
    mine = null;
  }

  function onConsoleEvent(event) {
    switch (event.event) {
      case "staff_ringing":
      case "staff_connected":
        calls.set(event.call_id, event);
        break;
      case "staff_ended":
      case "staff_missed":
      case "staff_abandoned":
        calls.delete(event.call_id);
        addHistory(event);
        if (mine && mine.callId === event.call_id) {
          closeMine();
          message("通話が終了しました。", "info");
        }
        break;
      case "staff_draining":
        if (mine && mine.callId === event.call_id) {
          const grace = Math.round(event.grace_s || 30);
          const when = grace < 90 ? `${grace}秒` : `${Math.round(grace / 60)}分`;
          message(`システムを停止するため、この通話は約${when}後に切れます。お客様へのご案内をお願いします。`, "warn");
        }
        break;
      default:
        break;
    }
    render();
  }

  async function postJson(url, body) {
    const response = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf, Accept: "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
    });
    if (!response.ok) {
      let detail = "";
      try {
        const data = await response.json();
        detail = typeof data.detail === "string" ? data.detail : "";
      } catch (e) { /* not JSON */ }
      const error = new Error(detail || `サーバーがエラーを返しました（${response.status}）。`);
      error.status = response.status;
      throw error;
    }
    return response.status === 204 ? null : response.json();
  }

  function waitForIce(pc) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => { if (pc.iceGatheringState === "complete") resolve(); };
      pc.addEventListener("icegatheringstatechange", done);
      setTimeout(resolve, 3000);
    });
  }

  async function answerCall(callId) {
    if (mine) return;
    message("", "info");
    let mic;
    try {
      mic = await navigator.mediaDevices.getUserMedia({ audio: true, video: false });
    } catch (e) {
      message("マイクを使用できません。ブラウザの設定でマイクを許可してください。", "error");
      return;
    }
    const pc = new RTCPeerConnection({ iceServers });
    mine = { callId, pc, mic };
    render();
    mic.getTracks().forEach((track) => pc.addTrack(track, mic));
    pc.addEventListener("track", (event) => {
      audio.srcObject = event.streams[0] || new MediaStream([event.track]);
      audio.play().catch(() => {});
    });
    pc.addEventListener("connectionstatechange", () => {
      if (pc.connectionState === "failed" && mine && mine.pc === pc) {
        closeMine();
        message("通話の接続が切れました。", "error");
        render();
      }
    });
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await waitForIce(pc);
      const answer = await postJson(`/api/staff/calls/${encodeURIComponent(callId)}/answer`, {
        sdp: pc.localDescription.sdp,
        type: pc.localDescription.type,
      });
      await pc.setRemoteDescription({ type: answer.type, sdp: answer.sdp });
      message("お客様とつながりました。", "ok");
    } catch (e) {
      closeMine();
      message(e.status === 409 ? "この電話は別の担当者が応答しました。" : `応答できませんでした：${e.message}`, "error");
    }
    render();
  }

  async function hangUp(callId) {
    try {
      await postJson(`/api/staff/calls/${encodeURIComponent(callId)}/hangup`);
    } catch (e) {
      if (e.status !== 404) message(`終話できませんでした：${e.message}`, "error");
    }
    closeMine();
    render();
  }

  function connect() {
    const events = new EventSource("/api/staff/events");
    events.addEventListener("open", () => {
      statusEl.textContent = "受付中（新しい着信は自動で表示されます）";
      statusEl.dataset.state = "live";
    });
    events.addEventListener("error", () => {
      statusEl.textContent = "接続が切れました。再接続しています…";
      statusEl.dataset.state = "lost";
    });
    events.addEventListener("snapshot", (event) => {
      calls.clear();
      JSON.parse(event.data).calls.forEach((c) => calls.set(c.call_id, c));
      render();
    });
    events.addEventListener("console", (event) => onConsoleEvent(JSON.parse(event.data)));
  }

  render();
  connect();
  // Leaving the page closes the connection; the server then ends the call for the caller.
  window.addEventListener("pagehide", closeMine);
})();
