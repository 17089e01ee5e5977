// Starts Swagger UI on /docs (a file, not an inline script, so the page's CSP can forbid inline code).
// "Try it out" sends the API key this tab's playground keeps, unless one was entered with "Authorize".
"use strict";

window.addEventListener("load", () => {
  window.ui = SwaggerUIBundle({
    url: document.body.dataset.openapi,
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    presets: [SwaggerUIBundle.presets.apis],
    deepLinking: true,
    validatorUrl: null, // the default asks a public validator service: nothing leaves the network
    requestInterceptor: (request) => {
      const key = sessionStorage.getItem("visiongate.key");
      if (key && !request.headers.Authorization) request.headers.Authorization = `Bearer ${key}`;
      return request;
    },
  });
});
