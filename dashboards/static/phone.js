// テスト電話: call the bot over WebRTC and show the conversation as it happens.
// Signalling: one POST with the complete SDP offer (ICE gathered), answer in the reply.
// Keypad digits, "ready" and "hangup" travel on the "control" data channel.
"use strict";

(() => {
  const root = document.getElementById("phone");
  if (!root) return;
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const iceServers = JSON.parse(root.dataset.iceServers || "[]");
  const stateEl = document.getElementById("call-state");
  const callButton = document.getElementById("call-button");
  const hangupButton = document.getElementById("hangup-button");
  const keys = Array.from(document.querySelectorAll("#keypad button"));
  const audio = document.getElementById("bot-audio");
  const transcript = document.getElementById("transcript");
  const transcriptEmpty = document.getElementById("transcript-empty");

  let call = null; // {pc, channel, events, id, mic, ended}

  const KIND_NOTES = {
    transfer_requested: "担当者を呼び出しています。",
    transfer_answered: "担当者につながりました。",
    transfer_failed: "担当者につながりませんでした。",
    error: "システムで問題が発生しました。",
  };

  function setState(text, state) {
    stateEl.textContent = text;
    stateEl.dataset.state = state;
  }

  function addLine(kind, who, text, meta) {
    transcriptEmpty.hidden = true;
    const li = document.createElement("li");
    li.className = "line-" + kind;
    const whoEl = document.createElement("span");
    whoEl.className = "who";
    whoEl.textContent = who;
    const textEl = document.createElement("span");
    textEl.className = "text";
    textEl.textContent = text;
    li.append(whoEl, textEl);
    if (meta) {
      const metaEl = document.createElement("span");
      metaEl.className = "meta";
      metaEl.textContent = meta;
      textEl.append(metaEl);
    }
    transcript.append(li);
    transcript.scrollTop = transcript.scrollHeight;
  }

  function setInCall(inCall) {
    callButton.disabled = inCall;
    hangupButton.disabled = !inCall;
    keys.forEach((k) => { k.disabled = !inCall; });
  }

  function waitForIce(pc) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        if (pc.iceGatheringState === "complete") {
          pc.removeEventListener("icegatheringstatechange", done);
          resolve();
        }
      };
      pc.addEventListener("icegatheringstatechange", done);
      setTimeout(resolve, 3000); // use what was gathered so far
    });
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
      throw new Error(detail || `サーバーがエラーを返しました（${response.status}）。`);
    }
    return response.status === 204 ? null : response.json();
  }

  function onCallEvent(data) {
    if (!call) return;
    if (typeof data.seq === "number") {
      if (call.seen.has(data.seq)) return;
      call.seen.add(data.seq);
    }
    switch (data.event) {
      case "recognized":
        if (data.final && data.text) addLine("caller", "あなた", data.text);
        break;
      case "bot_speech_started":
        if (data.text) addLine("bot", "ボット", data.text);
        break;
      case "transfer_answered":
        setState("担当者と通話中", "staff");
        // Keys now would reach nobody: the bot is out of the call and staff hear voice only.
        keys.forEach((k) => { k.disabled = true; });
        addLine("note", "お知らせ", KIND_NOTES[data.event]);
        break;
      case "transfer_requested":
      case "transfer_failed":
      case "error":
        addLine("note", "お知らせ", KIND_NOTES[data.event]);
        break;
      case "call_ended":
        if (data.outcome !== "transferred") finish("通話が終了しました");
        break;
      case "gap":
        addLine("note", "お知らせ", "表示が追いつかず、一部のやりとりを表示できませんでした。");
        break;
      default:
        break;
    }
  }

  function sendControl(message) {
    if (call && call.channel && call.channel.readyState === "open") {
      call.channel.send(JSON.stringify(message));
    }
  }

  function maybeReady() {
    // The bot starts once this page listens to the call's events: nothing is missed.
    if (call && call.channelOpen && call.eventsOpen && !call.readySent) {
      call.readySent = true;
      sendControl({ type: "ready" });
    }
  }

  function finish(text) {
    if (!call || call.ended) return;
    call.ended = true;
    setState(text, "idle");
    addLine("note", "お知らせ", text + "。");
    if (call.events) call.events.close();
    if (call.mic) call.mic.getTracks().forEach((t) => t.stop());
    try { call.pc.close(); } catch (e) { /* already closed */ }
    setInCall(false);
    call = null;
  }

  async function startCall() {
    setInCall(true);
    callButton.disabled = true;
    transcript.textContent = "";
    setState("マイクを準備しています…", "connecting");
    let mic;
    try {
      mic = await navigator.mediaDevices.getUserMedia({ audio: true, video: false });
    } catch (e) {
      setState("マイクを使用できません。ブラウザの設定でマイクを許可してください。", "error");
      setInCall(false);
      return;
    }
    const pc = new RTCPeerConnection({ iceServers });
    const channel = pc.createDataChannel("control");
    call = { pc, channel, mic, id: null, events: null, ended: false, seen: new Set(),
             channelOpen: false, eventsOpen: false, readySent: false };
    const current = call;
    mic.getTracks().forEach((track) => pc.addTrack(track, mic));
    pc.addEventListener("track", (event) => {
      audio.srcObject = event.streams[0] || new MediaStream([event.track]);
      audio.play().catch(() => {});
    });
    pc.addEventListener("connectionstatechange", () => {
      if (current !== call) return;
      if (pc.connectionState === "connected") setState("通話中", "active");
      if (pc.connectionState === "failed") finish("接続が切れました");
    });
    channel.addEventListener("open", () => { current.channelOpen = true; maybeReady(); });
    channel.addEventListener("message", (event) => {
      let message;
      try { message = JSON.parse(event.data); } catch (e) { return; }
      if (message.type === "hangup") finish("通話が終了しました");
      else if (message.type === "error") addLine("note", "お知らせ", "送信できませんでした: " + message.message);
    });
    channel.addEventListener("close", () => { if (current === call) finish("通話が終了しました"); });

    setState("発信しています…", "connecting");
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await waitForIce(pc);
      const answer = await postJson("/api/phone/offer", {
        sdp: pc.localDescription.sdp,
        type: pc.localDescription.type,
      });
      if (current !== call) return;
      current.id = answer.call_id;
      root.dataset.callId = answer.call_id;
      await pc.setRemoteDescription({ type: answer.type, sdp: answer.sdp });
      const events = new EventSource(`/api/phone/${encodeURIComponent(answer.call_id)}/events`);
      current.events = events;
      events.addEventListener("open", () => { current.eventsOpen = true; maybeReady(); });
      events.addEventListener("call", (event) => onCallEvent(JSON.parse(event.data)));
    } catch (e) {
      const message = e && e.message ? e.message : String(e);
      finish("発信できませんでした");
      setState("発信できませんでした: " + message, "error");
    }
  }

  async function hangUp() {
    if (!call) return;
    const id = call.id;
    sendControl({ type: "hangup" });
    finish("通話を終了しました");
    if (id) {
      try { await postJson(`/api/phone/${encodeURIComponent(id)}/hangup`); } catch (e) { /* gone */ }
    }
  }

  callButton.addEventListener("click", startCall);
  hangupButton.addEventListener("click", hangUp);
  keys.forEach((key) => key.addEventListener("click", () => {
    const digit = key.dataset.digit;
    sendControl({ type: "dtmf", digit });
    addLine("note", "ボタン", `「${digit}」を押しました。`);
  }));
  window.addEventListener("pagehide", () => {
    if (call) { sendControl({ type: "hangup" }); try { call.pc.close(); } catch (e) { /* closed */ } }
  });
})();
