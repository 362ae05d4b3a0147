// The sign-in page: keep the session's key for this origin only (port
// included, unlike the cookie), then open the dashboard.
"use strict";
const key = document.querySelector('meta[name="aixblock-key"]');
if (key && key.content) {
  localStorage.setItem("aixblock_key", key.content);
  location.replace("/ui/");
}
