// The offer form shows only the chosen type's fields. Without this script every field
// shows, each group labelled with its offer type. A group with an error stays visible.
(function () {
  var form = document.getElementById("offer-form");
  if (!form) { return; }
  var type = form.querySelector("select[name=type]");
  var groups = form.querySelectorAll("fieldset[data-for-type]");
  function show() {
    for (var i = 0; i < groups.length; i++) {
      var group = groups[i];
      var keep = group.getAttribute("data-for-type") === type.value ||
        group.querySelector(".has-error") !== null;
      group.style.display = keep ? "" : "none";
    }
  }
  type.addEventListener("change", show);
  show();
  var summary = document.getElementById("error-summary");
  if (summary) { summary.focus(); }
})();
