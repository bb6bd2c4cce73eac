// Starts Swagger UI on /api/v1/docs. A file of its own, not an inline script, so the
// page's Content-Security-Policy can allow scripts from this site only.
window.addEventListener("load", function () {
  var container = document.getElementById("swagger-ui-container");
  window.ui = SwaggerUIBundle({ url: container.dataset.specUrl, dom_id: "#swagger-ui-container" });
});
