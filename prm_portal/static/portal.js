// Live changes for partner pages: the server-sent events of /events update the rows on the
// page, remove the records that left the partner's slice, and refresh the writes' status.
(function () {
  "use strict";
  var body = document.body;
  if (body.dataset.feedCursor === undefined) { return; }
  var banner = document.getElementById("live-banner");
  var source = new EventSource(body.dataset.events + "?since=" + body.dataset.feedCursor);

  function rows(recordId) {
    return document.querySelectorAll('[data-record="' + CSS.escape(recordId) + '"]');
  }

  function shown(field, value) {
    if (value === null || value === undefined) { return ""; }
    if (/Amount|Price/.test(field) && typeof value === "number") {
      return value.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
    }
    return String(value);
  }

  function tell(text) {
    banner.textContent = text;
    banner.hidden = false;
  }

  function leave(change) {
    if (body.dataset.record === change.record_id) {
      document.getElementById("gone").hidden = false;
      document.querySelectorAll("#deal form, #deal table").forEach(function (el) { el.remove(); });
      source.close();
      return;
    }
    rows(change.record_id).forEach(function (row) {
      if (row !== body) { row.remove(); }
    });
  }

  function update(change) {
    var found = rows(change.record_id);
    if (!found.length && change.op === "enter") {
      tell("New records arrived in your slice: reload to see them.");
    }
    found.forEach(function (row) {
      Object.keys(change.fields || {}).forEach(function (field) {
        row.querySelectorAll('[data-field="' + CSS.escape(field) + '"]').forEach(function (cell) {
          if (cell.closest("[data-record]") !== row) { return; }
          cell.textContent = shown(field, change.fields[field]);
          cell.classList.add("changed");
        });
      });
    });
  }

  source.addEventListener("change", function (event) {
    var change = JSON.parse(event.data);
    if (change.op === "leave" || change.op === "delete") { leave(change); } else { update(change); }
  });

  source.addEventListener("write", function (event) {
    var write = JSON.parse(event.data);
    document.querySelectorAll('[data-write="' + write.seq + '"] .status').forEach(function (cell) {
      var state = document.createElement("span");
      state.className = "state " + write.state;
      state.textContent = write.label;
      cell.replaceChildren(state);
      if (write.message) {
        var message = document.createElement("span");
        message.className = "message";
        message.textContent = " " + write.message;
        cell.appendChild(message);
      }
    });
  });
})();
