// 定制发送: the field buttons insert {列名} at the cursor of the text box.
// Optional: without this script the fields are typed by hand.
document.addEventListener("click", function (e) {
  var b = e.target.closest ? e.target.closest("[data-insert]") : null;
  if (!b) return;
  var ta = document.getElementById(b.getAttribute("data-target"));
  if (!ta) return;
  e.preventDefault();
  var s = ta.selectionStart, end = ta.selectionEnd;
  ta.setRangeText(b.getAttribute("data-insert"), s, end, "end");
  ta.focus();
  ta.dispatchEvent(new Event("input", { bubbles: true }));
});
