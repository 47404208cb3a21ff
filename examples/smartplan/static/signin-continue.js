// The SAML continue page (/signin/saml/acs without our cookies): post the identity provider's
// answer once more from our own origin, so that the browser sends the sign-in cookie along.
// Without JavaScript the person presses the "Continue" button instead.
document.addEventListener('DOMContentLoaded', function () {
  var form = document.getElementById('saml-continue');
  if (form) {
    form.submit();
  }
});
