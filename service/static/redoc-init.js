// Starts ReDoc on /redoc from the gateway's own OpenAPI document (no fonts or scripts from elsewhere).
"use strict";

window.addEventListener("load", () => {
  Redoc.init(document.body.dataset.openapi, { hideDownloadButton: false }, document.getElementById("redoc"));
});
