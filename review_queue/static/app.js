// Keyboard shortcuts of the review page (f l s e n ?) and a periodic refresh of the queue.
(function () {
  "use strict";
  var page = document.body.getAttribute("data-page");
  var help = document.getElementById("help");

  function typing(event) {
    var t = event.target;
    return t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable);
  }

  function submit(id) {
    var form = document.getElementById(id);
    if (!form) { return false; }
    var note = document.getElementById("note");
    var field = form.querySelector("input[name=note]");
    if (note && field) { field.value = note.value; }
    form.submit();
    return true;
  }

  var keys = {
    f: function () { return page === "case" && submit("form-fraud"); },
    l: function () { return page === "case" && submit("form-legit"); },
    s: function () { return page === "case" && submit("form-skip"); },
    e: function () { return page === "case" && submit("form-escalate"); },
    n: function () { return submit("form-next"); },
    "?": function () { if (help) { help.classList.toggle("shown"); } return true; }
  };

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event)) { return; }
    var action = keys[event.key];
    if (action && action()) { event.preventDefault(); }
  });

  if (page === "queue") {
    window.setInterval(function () {
      var active = document.activeElement;
      if (!active || (active.tagName !== "INPUT" && active.tagName !== "SELECT")) { window.location.reload(); }
    }, 20000);
  }
})();
