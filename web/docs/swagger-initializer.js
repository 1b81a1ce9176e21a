// Swagger UI on shopd's own document. "Try it out" sends its requests to the
// shopd that serves this page, whichever server of the document is selected
// (requestInterceptor): that is the server a reader of /docs has, and the
// page's connect-src 'self' allows no other. validatorUrl null: no badge image
// from validator.swagger.io (the policy would refuse it; the document is
// linted by the tests).
"use strict";
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.yaml",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    docExpansion: "list",
    defaultModelsExpandDepth: 0,
    tryItOutEnabled: false,
    persistAuthorization: false,
    requestInterceptor: function (req) {
      var u = new URL(req.url, window.location.href);
      if (u.origin !== window.location.origin)
        req.url = window.location.origin + u.pathname + u.search;
      return req;
    },
  });
});
