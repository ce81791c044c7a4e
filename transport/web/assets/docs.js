// Renders /openapi.json with the vendored Swagger UI. Kept out of the page so
// the page's Content-Security-Policy can refuse inline script.
"use strict";

(function () {
  var dark = window.matchMedia("(prefers-color-scheme: dark)");
  function applyScheme() {
    // swagger-ui.css ships a dark theme under html.dark-mode.
    document.documentElement.classList.toggle("dark-mode", dark.matches);
  }
  applyScheme();
  dark.addEventListener("change", applyScheme);

  window.addEventListener("DOMContentLoaded", function () {
    if (typeof window.SwaggerUIBundle !== "function") {
      document.getElementById("swagger-ui").textContent = "The documentation viewer failed to load.";
      return;
    }
    window.ui = window.SwaggerUIBundle({
      url: "/openapi.json",
      dom_id: "#swagger-ui",
      deepLinking: true,
      docExpansion: "list",
      defaultModelsExpandDepth: 0,
      displayOperationId: false,
      displayRequestDuration: true,
      filter: true,
      // The default validator badge calls validator.swagger.io: no network.
      validatorUrl: null,
      tryItOutEnabled: false,
      persistAuthorization: false,
      presets: [window.SwaggerUIBundle.presets.apis],
      layout: "BaseLayout",
    });
  });
})();
