// Darkroom: renders /openapi.json with Swagger UI (vendored swagger-ui-dist, see LICENSE).
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: false,
    docExpansion: "list",
    presets: [SwaggerUIBundle.presets.apis],
    // Each operation's "copy path" button sits inside the button that expands the operation,
    // a control inside a control that screen readers and keyboards cannot reach (axe:
    // nested-interactive). The path is in the summary as text; the copy button goes.
    plugins: [
      function () {
        return { wrapComponents: { CopyToClipboardBtn: function () { return function () { return null; }; } } };
      },
    ],
    // Swagger UI leaves its server picker without an accessible name: give it one.
    onComplete: function () {
      var servers = document.getElementById("servers");
      if (servers) servers.setAttribute("aria-label", "Server");
    },
  });
});
