// The hash file host's pages, made nicer where JavaScript runs: drag and drop onto the upload
// form, the chosen files listed, and copy buttons next to each URL. Without it the plain form,
// links and confirmation pages do everything.
"use strict";

(function () {
  function copied(button, ok) {
    const label = button.dataset.label || button.textContent;
    button.dataset.label = label;
    button.textContent = ok ? "Copied" : "Copy failed";
    setTimeout(function () { button.textContent = label; }, 2000);
  }

  // The Clipboard API needs a secure context; elsewhere a selected text area and execCommand.
  function copy(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    return new Promise(function (resolve, reject) {
      const area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.style.position = "fixed";
      area.style.opacity = "0";
      document.body.appendChild(area);
      area.select();
      const ok = document.execCommand("copy");
      area.remove();
      (ok ? resolve : reject)();
    });
  }

  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", function () {
      copy(button.dataset.copy).then(
        function () { copied(button, true); },
        function () { copied(button, false); }
      );
    });
  });

  const form = document.querySelector("form[data-dropzone]");
  if (!form) return;
  const input = form.querySelector("input[type=file]");
  const zone = form.querySelector(".dropzone");
  const chosen = form.querySelector(".chosen");
  form.querySelectorAll("[data-js-only]").forEach(function (el) { el.hidden = false; });

  function show() {
    chosen.replaceChildren();
    Array.from(input.files).forEach(function (file) {
      const item = document.createElement("li");
      item.textContent = file.name + " (" + file.size + " bytes)";
      chosen.appendChild(item);
    });
    chosen.hidden = input.files.length === 0;
  }
  input.addEventListener("change", show);

  // A file dropped anywhere on the page must not replace the page with that file.
  ["dragover", "drop"].forEach(function (type) {
    document.addEventListener(type, function (event) { event.preventDefault(); });
  });
  zone.addEventListener("dragenter", function () { zone.classList.add("over"); });
  zone.addEventListener("dragover", function (event) {
    event.dataTransfer.dropEffect = "copy";
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", function () { zone.classList.remove("over"); });
  zone.addEventListener("drop", function (event) {
    zone.classList.remove("over");
    if (!event.dataTransfer || event.dataTransfer.files.length === 0) return;
    input.files = event.dataTransfer.files;
    show();
    form.requestSubmit();
  });
})();
