// Rosey's live page: server-sent events replace the sections the server re-renders (already
// escaped there) and append chat lines; plugin buttons post with the page's CSRF token.
"use strict";
(function () {
  const channel = document.querySelector('meta[name="rosey-channel"]').content;
  const csrfMeta = document.querySelector('meta[name="rosey-csrf"]');
  const live = document.getElementById("live");
  const liveText = document.getElementById("live-text");
  let range = "24h";
  const baseTitle = document.title.replace(/^⚠ /, "");

  function setLive(state, text) {
    live.dataset.state = state;
    liveText.textContent = text;
  }

  function stickToBottom(list, wasAtBottom) {
    if (wasAtBottom) list.scrollTop = list.scrollHeight;
  }

  function atBottom(list) {
    return list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  }

  function refreshChart() {
    const img = document.getElementById("chart");
    if (img) img.src = "/chart.svg?range=" + range + "&channel=" + encodeURIComponent(channel) + "&v=" + Date.now();
    document.querySelectorAll(".range button").forEach(function (b) {
      b.classList.toggle("on", b.dataset.range === range);
    });
  }

  function connect() {
    const es = new EventSource("/events?channel=" + encodeURIComponent(channel));
    es.onopen = function () { setLive("live", "live"); };
    es.onerror = function () { setLive("down", "reconnecting…"); };
    es.addEventListener("section", function (e) {
      const s = JSON.parse(e.data);
      if (s.id === "chat") {
        const list = document.getElementById("chat");
        const bottom = atBottom(list);
        list.innerHTML = s.html;
        stickToBottom(list, bottom);
        return;
      }
      const el = document.getElementById(s.id);
      if (el) el.innerHTML = s.html;
      if (s.id === "health") document.title = (s.html.trim() ? "⚠ " : "") + baseTitle;
      if (s.id === "stats") refreshChart();
    });
    es.addEventListener("chat", function (e) {
      const s = JSON.parse(e.data);
      const list = document.getElementById("chat");
      const bottom = atBottom(list);
      list.insertAdjacentHTML("beforeend", s.html);
      while (list.children.length > s.keep) list.removeChild(list.firstElementChild);
      stickToBottom(list, bottom);
    });
    es.addEventListener("state", function (e) {
      const s = JSON.parse(e.data);
      if (!s.nats) setLive("down", "rosey-web lost NATS");
      else if (!s.db) setLive("live", "live · rosey-db not answering");
      else setLive("live", "live");
    });
  }

  document.addEventListener("click", function (e) {
    const t = e.target;
    if (!(t instanceof HTMLElement)) return;
    if (t.dataset.range) {
      range = t.dataset.range;
      refreshChart();
      return;
    }
    if (t.dataset.action && t.dataset.plugin && csrfMeta) {
      t.disabled = true;
      fetch("/api/plugins/" + encodeURIComponent(t.dataset.plugin) + "/" + t.dataset.action, {
        method: "POST",
        headers: { "X-Rosey-CSRF": csrfMeta.content },
        credentials: "same-origin",
      }).then(function (r) {
        if (!r.ok) return r.json().then(function (b) { throw new Error(b.error || r.status); });
      }).catch(function (err) {
        t.disabled = false;
        t.title = String(err.message || err);
        t.classList.add("failed");
      });
    }
  });

  const list = document.getElementById("chat");
  list.scrollTop = list.scrollHeight;
  setInterval(refreshChart, 60000);
  connect();
})();
