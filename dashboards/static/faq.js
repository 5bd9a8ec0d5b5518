// FAQ editor: "try a question", "listen to the answer" and the answer length counter.
"use strict";

(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";
  const actionLabels = { answer: "回答する", redirect: "他の窓口を案内", transfer: "職員につなぐ" };
  const decisionLabels = {
    answer: "そのまま回答します",
    confirm: "「〜についてのご質問でよろしいでしょうか」と確認します",
    choose: "近い二つの項目のどちらについてのご質問か伺います",
    redirect: "他の窓口をご案内します",
    transfer: "職員におつなぎします",
    repeat: "直前の案内を繰り返します",
    goodbye: "通話を終えます",
    reprompt: "もう一度お話しいただくようお願いします",
    hold: "お客様のご準備をお待ちします",
    not_a_tax: "市税以外のご質問のため、問い合わせ先をご案内します",
    resume: "「お聞きしております」とお伝えし、ご質問を伺います",
  };
  // The reply, when it is not what the action alone suggests (e.g. staff outside hours).
  const kindLabels = {
    out_of_hours: "職員の対応時間外のため、対応時間をご案内します",
    staff_unreachable: "職員におつなぎできなかったため、改めてのお電話をお願いします",
  };

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    for (const child of children) node.append(child);
    return node;
  }

  async function errorText(response) {
    try {
      const body = await response.json();
      if (typeof body.detail === "string") return body.detail;
    } catch (e) { /* not JSON */ }
    return `エラーが発生しました（${response.status}）。`;
  }

  const tryForm = document.getElementById("try-form");
  if (tryForm) {
    tryForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      const out = document.getElementById("try-result");
      const text = document.getElementById("try-text").value.trim();
      const target = document.getElementById("try-target").value;
      if (!text) return;
      out.textContent = "確認しています…";
      const response = await fetch("/api/faq/try", {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
        body: JSON.stringify({ text, target }),
      });
      out.textContent = "";
      if (!response.ok) {
        out.append(el("p", { class: "error-message" }, await errorText(response)));
        return;
      }
      const result = await response.json();
      const d = result.decision;
      out.append(el("p", { class: "decision" },
        el("strong", {}, "ボットの対応: "),
        kindLabels[d.kind] || decisionLabels[d.action] || d.action,
        el("span", { class: "score" }, `（確からしさ ${d.score.toFixed(2)}）`)));
      // The dialogue's words: what a caller asking this first would hear now.
      out.append(el("p", { class: "say" }, el("strong", {}, "話す内容: "), d.say));
      if (!result.candidates.length) {
        out.append(el("p", {}, "該当しそうな項目は見つかりませんでした。"));
        return;
      }
      const list = el("ol", { class: "candidates" });
      for (const c of result.candidates) {
        list.append(el("li", { "data-faq-id": c.faq_id },
          el("a", { href: `/faq/entries/${encodeURIComponent(c.faq_id)}` }, c.title),
          " ", el("span", { class: `badge badge-${c.action}` }, actionLabels[c.action] || c.action),
          " ", el("span", { class: "score" }, c.score.toFixed(2)),
          el("div", { class: "candidate-answer" }, c.answer)));
      }
      out.append(list);
    });
  }

  let playing = null;
  document.addEventListener("click", async (event) => {
    const button = event.target.closest("button.listen");
    if (!button) return;
    const id = button.dataset.entry;
    const label = button.textContent;
    button.disabled = true;
    button.textContent = "準備中…";
    try {
      const response = await fetch(`/api/faq/entries/${encodeURIComponent(id)}/audio`);
      if (!response.ok) {
        alert(await errorText(response));
        return;
      }
      const url = URL.createObjectURL(await response.blob());
      if (playing) playing.pause();
      playing = new Audio(url);
      playing.addEventListener("ended", () => {
        URL.revokeObjectURL(url);
        button.dataset.state = "ended";
      });
      await playing.play();
      button.dataset.state = "playing";
    } catch (e) {
      alert("再生できませんでした。");
    } finally {
      button.disabled = false;
      button.textContent = label;
    }
  });

  // Publishing waits until the bot has rendered the new answers' audio, which with the
  // Kokoro voice takes a few seconds per changed answer: say so instead of looking stuck.
  document.addEventListener("submit", (event) => {
    const form = event.target.closest("form[data-busy]");
    if (!form || event.defaultPrevented) return;
    const button = form.querySelector("button[type=submit]");
    if (!button) return;
    // after this handler, so that the button's own value is still sent with the form
    setTimeout(() => {
      button.disabled = true;
      button.textContent = form.dataset.busy;
    }, 0);
  });

  const answer = document.getElementById("answer");
  const counter = document.getElementById("answer-count");
  if (answer && counter) {
    const update = () => {
      const n = answer.value.replace(/\s+/g, "").length;
      counter.textContent = `いまの文字数: ${n}文字（差し込み項目は置き換え前の数です）`;
      counter.classList.toggle("error-message", n > 150);
    };
    answer.addEventListener("input", update);
    update();
  }
})();
