// Puts the text of a chosen file into the text area named by the input's data-fills attribute
// (the CSV batch invitation posts text; without JavaScript, paste the CSV instead).
document.querySelectorAll('input[type="file"][data-fills]').forEach(function (input) {
  input.addEventListener('change', function () {
    var target = document.getElementById(input.getAttribute('data-fills'));
    var file = input.files && input.files[0];
    if (!target || !file) { return; }
    file.text().then(function (text) { target.value = text; });
  });
});
