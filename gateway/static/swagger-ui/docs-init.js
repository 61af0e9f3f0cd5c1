// Darkroom: renders /openapi.json with Swagger UI (vendored swagger-ui-dist, see LICENSE).
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    docExpansion: "list",
    presets: [SwaggerUIBundle.presets.apis],
  });
});
