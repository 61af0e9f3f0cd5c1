// The review workspace's script: what the page cannot do with HTML and CSS alone. Without it
// every view, the outlines and every decision still work (radio buttons and plain forms).
//
// Keys: j / k next and previous change (across pages), a accept, r reject, i ignore, u undo,
// v next view, z zoom to the changed region at 100 %, f fit. Decisions are posted with fetch
// (the form's own token) and the page updates in place; on any failure the form is submitted
// the ordinary way, so the server's answer (or its error page) is what the person sees.
"use strict";

(() => {
  const workspace = document.querySelector(".workspace");
  if (!workspace) return;
  const changes = () => Array.from(document.querySelectorAll("article.change"));
  const listItem = (position) =>
    document.querySelector(`.change-list .item[data-position="${position}"]`);
  let current = null;

  for (const hidden of document.querySelectorAll(
    ".list-filter, .keys, .zoom, .slider, .view-swipe, .view-swipe + label",
  )) {
    hidden.hidden = false;
  }

  // --- the current change -------------------------------------------------------------------

  function select(article, scroll = true) {
    if (!article) return;
    if (current) {
      current.classList.remove("current");
      listItem(current.dataset.position)?.classList.remove("current");
    }
    current = article;
    article.classList.add("current");
    const item = listItem(article.dataset.position);
    if (item) {
      item.classList.add("current");
      item.scrollIntoView({ block: "nearest" });
    }
    if (scroll) {
      article.scrollIntoView({ block: "start" });
      article.focus({ preventScroll: true });
      history.replaceState(null, "", `#entry-${article.dataset.position}`);
    }
  }

  function move(step) {
    const all = changes();
    const index = current ? all.indexOf(current) : -1;
    const next = all[index + step];
    if (next) return select(next);
    // Past the page's first or last change: the neighbouring page, at its first or last one.
    const link = document.querySelector(step > 0 ? ".pager a[rel=next]" : ".pager a[rel=prev]");
    if (link) location.href = link.href + (step > 0 ? "" : "#last");
  }

  // --- decisions ----------------------------------------------------------------------------

  const DECIDED = { accept: "accepted", reject: "rejected", ignore: "ignored", undo: null };

  const total = Number(workspace.dataset.changes);

  function showVerdict(verdict) {
    for (const count of document.querySelectorAll(".undecided-count")) {
      count.textContent = verdict.undecided;
    }
    for (const button of document.querySelectorAll(".decide-remaining button")) {
      button.disabled = verdict.undecided === 0;
    }
    const badge = document.querySelector(".outcome .status");
    if (badge) {
      badge.textContent = verdict.status;
      badge.className = `status status-${verdict.status.replace(/ /g, "-")}`;
    }
    const text = document.querySelector(".outcome-text");
    if (text) {
      text.textContent =
        verdict.status === "awaiting review"
          ? `${verdict.undecided} of ${total} change${total === 1 ? "" : "s"} ${verdict.undecided === 1 ? "waits" : "wait"} for a review.`
          : `${verdict.status === "success" ? "Accepted" : "Rejected"}; the last decision by you.`;
    }
  }

  function showDecision(position, decision) {
    const article = document.getElementById(`entry-${position}`);
    const state = `decision-${decision || "undecided"}`;
    for (const element of [article, listItem(position)]) {
      if (!element) continue;
      element.className = element.className.replace(/\bdecision-\w+/, state);
    }
    if (article) {
      const word = article.querySelector(".decision-word");
      if (word) {
        word.textContent = decision ? decision[0].toUpperCase() + decision.slice(1) : "Not reviewed yet";
      }
      const undo = article.querySelector("button.undo");
      if (undo) undo.hidden = !decision;
    }
    const item = listItem(position);
    if (item) {
      const marks = { accepted: "✓", rejected: "✗", ignored: "~" };
      item.querySelector(".mark").textContent = marks[decision] || "·";
      item.querySelector(".decision-text").textContent = decision || "not reviewed";
    }
  }

  async function post(form, word) {
    const body = new FormData(form);
    body.set("decision", word);
    const answer = await fetch(form.action, {
      method: "POST",
      body,
      headers: { Accept: "application/json" },
      credentials: "same-origin",
    });
    if (!answer.ok || !answer.headers.get("Content-Type")?.startsWith("application/json")) {
      throw new Error(`review answered ${answer.status}`);
    }
    return answer.json();
  }

  function fallback(form, word) {
    const field = document.createElement("input");
    field.type = "hidden";
    field.name = "decision";
    field.value = word;
    form.append(field);
    form.submit();
  }

  async function decide(form, word, advance) {
    try {
      const verdict = await post(form, word);
      if (verdict.position === null) {
        // "all remaining": every undecided change on this page took the decision
        for (const article of changes()) {
          if (article.classList.contains("decision-undecided")) {
            showDecision(article.dataset.position, verdict.decision);
          }
        }
      } else {
        showDecision(verdict.position, verdict.decision);
      }
      showVerdict(verdict);
      if (advance && word !== "undo") move(1);
    } catch {
      fallback(form, word);
    }
  }

  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (!form.matches("form.decide, form.decide-remaining")) return;
    const word = event.submitter?.value;
    if (!word) return;
    event.preventDefault();
    const article = form.closest("article.change");
    if (article) select(article, false);
    decide(form, word, false);
  });

  function decideCurrent(word) {
    const form = current?.querySelector("form.decide");
    if (!form) return;
    if (word === "ignore" && !form.querySelector("button.ignore")) return;
    decide(form, word, true);
  }

  // --- views, sliders and zoom --------------------------------------------------------------

  function nextView(article) {
    const tabs = Array.from(article.querySelectorAll(".views > input.tab")).filter(
      (tab) => !tab.hidden,
    );
    if (!tabs.length) return;
    const index = tabs.findIndex((tab) => tab.checked);
    tabs[(index + 1) % tabs.length].checked = true;
  }

  document.addEventListener("input", (event) => {
    const slider = event.target;
    const pane = slider.closest(".pane");
    if (!pane) return;
    if (slider.matches("input.opacity")) {
      for (const radio of pane.querySelectorAll("input.tab")) radio.checked = false;
      pane.querySelector(".stage img.after").style.opacity = slider.value / 100;
    } else if (slider.matches("input.swipe")) {
      pane.querySelector(".stage").style.setProperty("--swipe", `${slider.value}%`);
    }
  });
  document.addEventListener("change", (event) => {
    // a fade radio takes over from the slider
    if (event.target.matches(".pane-overlay input.tab")) {
      const pane = event.target.closest(".pane");
      pane.querySelector(".stage img.after").style.opacity = "";
    }
  });

  function zoom(article, factor) {
    article.classList.toggle("zoomed", factor > 0);
    for (const frame of article.querySelectorAll(".views .frame")) {
      frame.dataset.fit ??= frame.style.width;
      frame.style.width = factor > 0 ? `${frame.dataset.width * factor}px` : frame.dataset.fit;
      frame.style.maxWidth = factor > 0 ? "none" : "";
    }
    const pressed = { 0: ".zoom-fit", 1: ".zoom-full", 2: ".zoom-double" }[factor];
    for (const button of article.querySelectorAll(".zoom button[aria-pressed]")) {
      button.setAttribute("aria-pressed", String(button.matches(pressed)));
    }
    article.dataset.zoom = factor;
  }

  function visibleScrollers(article) {
    return Array.from(article.querySelectorAll(".views .scroller")).filter(
      (scroller) => scroller.offsetParent !== null,
    );
  }

  function jump(article) {
    // The changed region at 100 % (or the zoom already chosen), centred in every visible view.
    if (!article.dataset.bbox) return;
    if (!(Number(article.dataset.zoom) > 0)) zoom(article, 1);
    const factor = Number(article.dataset.zoom);
    const [left, top, width, height] = article.dataset.bbox.split(",").map(Number);
    for (const scroller of visibleScrollers(article)) {
      scroller.scrollLeft = (left + width / 2) * factor - scroller.clientWidth / 2;
      scroller.scrollTop = (top + height / 2) * factor - scroller.clientHeight / 2;
    }
    const region = article.querySelector(".pane:not([hidden]) .region");
    (visibleScrollers(article)[0] || region)?.scrollIntoView({ block: "center" });
  }

  // the two sides of "side by side" scroll together
  let syncing = false;
  document.addEventListener(
    "scroll",
    (event) => {
      const scroller = event.target;
      if (syncing || !(scroller instanceof Element) || !scroller.matches(".pane-sbs .scroller")) {
        return;
      }
      syncing = true;
      for (const other of scroller.closest(".pane-sbs").querySelectorAll(".scroller")) {
        if (other !== scroller) {
          other.scrollLeft = scroller.scrollLeft;
          other.scrollTop = scroller.scrollTop;
        }
      }
      requestAnimationFrame(() => {
        syncing = false;
      });
    },
    true,
  );

  document.addEventListener("click", (event) => {
    const button = event.target.closest(".zoom button");
    if (!button) return;
    const article = button.closest("article.change");
    select(article, false);
    if (button.matches(".jump")) jump(article);
    else zoom(article, button.matches(".zoom-full") ? 1 : button.matches(".zoom-double") ? 2 : 0);
  });

  // --- filter -------------------------------------------------------------------------------

  const filterText = document.querySelector(".filter-text");
  const filterDecision = document.querySelector(".filter-decision");
  function filter() {
    const text = (filterText?.value || "").trim().toLowerCase();
    const decision = filterDecision?.value || "";
    for (const item of document.querySelectorAll(".change-list .item")) {
      const shown =
        (!text || item.dataset.text.includes(text)) &&
        (!decision || item.classList.contains(`decision-${decision}`));
      item.hidden = !shown;
    }
    for (const group of document.querySelectorAll(".change-list .group")) {
      group.hidden = !group.querySelector(".item:not([hidden])");
    }
  }
  filterText?.addEventListener("input", filter);
  filterDecision?.addEventListener("change", filter);

  // --- keyboard -----------------------------------------------------------------------------

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.target.closest("input, select, textarea, [contenteditable]")) return;
    const actions = {
      j: () => move(1),
      k: () => move(-1),
      a: () => decideCurrent("accept"),
      r: () => decideCurrent("reject"),
      i: () => decideCurrent("ignore"),
      u: () => decideCurrent("undo"),
      v: () => current && nextView(current),
      z: () => current && jump(current),
      f: () => current && zoom(current, 0),
    };
    const action = actions[event.key];
    if (!action) return;
    event.preventDefault();
    if (!current && event.key !== "j" && event.key !== "k") select(changes()[0]);
    action();
  });

  // Start on the change the address names, or on the last one when arriving from the next page
  // (k past the first change), else on the first change not reviewed yet.
  const all = changes();
  const id = decodeURIComponent(location.hash.slice(1));
  const named = id === "last" ? all[all.length - 1] : id ? document.getElementById(id) : null;
  const start = named?.matches("article.change")
    ? named
    : all.find((article) => article.classList.contains("decision-undecided"));
  if (start) select(start, Boolean(named));
})();
