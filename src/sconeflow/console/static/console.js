// sconeflow console: the few things the server-rendered pages cannot do alone.
// - the executions list updates itself (first page only) every 2 s;
// - an execution that is still running reloads until it ends;
// - the state machine page starts an execution through the console's own Step Functions API
//   (the same call boto3 makes), then opens it;
// - endpoint charts refresh while the page is open.
"use strict";

async function callStepFunctions(action, body) {
  const response = await fetch("/", {
    method: "POST",
    headers: {"Content-Type": "application/x-amz-json-1.0",
              "X-Amz-Target": "AWSStepFunctions." + action},
    body: JSON.stringify(body),
  });
  const data = await response.json();
  if (!response.ok) {
    throw new Error((data.__type || response.status) + ": " + (data.message || ""));
  }
  return data;
}

function liveExecutions() {
  const table = document.getElementById("executions");
  const counts = document.getElementById("counts");
  if (!table || !counts || counts.dataset.live !== "true") return;
  const query = table.dataset.query;
  async function refresh() {
    try {
      const response = await fetch("/executions/rows" + (query ? "?" + query : ""));
      if (response.ok) {
        const data = await response.json();
        // Rendered (and escaped) by the server's template, like the page itself.
        document.getElementById("execution-rows").innerHTML = data.rows;
        counts.querySelector(".total").textContent = data.counts.total + " in all";
        for (const span of counts.querySelectorAll("[data-status]")) {
          const status = span.dataset.status;
          span.textContent = (data.counts[status] || 0) + " " +
            status.toLowerCase().replace("_", " ");
        }
      }
    } finally {
      setTimeout(refresh, 2000);
    }
  }
  setTimeout(refresh, 2000);
}

function startForm() {
  const form = document.getElementById("start-form");
  if (!form) return;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const error = document.getElementById("start-error");
    error.textContent = "";
    const text = document.getElementById("start-input").value;
    try {
      JSON.parse(text);
    } catch (err) {
      error.textContent = "The input is not JSON: " + err.message;
      return;
    }
    const body = {stateMachineArn: form.dataset.arn, input: text};
    const name = document.getElementById("start-name").value.trim();
    if (name) body.name = name;
    const button = document.getElementById("start-button");
    button.disabled = true;
    try {
      const started = await callStepFunctions("StartExecution", body);
      window.location.assign("/execution?arn=" + encodeURIComponent(started.executionArn));
    } catch (err) {
      error.textContent = err.message;
      button.disabled = false;
    }
  });
}

function reloadWhileRunning() {
  const title = document.getElementById("execution-title");
  if (title && title.dataset.running === "true") {
    setTimeout(() => window.location.reload(), 1000);
  }
}

function refreshCharts() {
  for (const img of document.querySelectorAll("img[data-refresh]")) {
    const every = parseInt(img.dataset.refresh, 10);
    const base = img.getAttribute("src").split("?")[0];
    setInterval(() => { img.src = base + "?t=" + Date.now(); }, every);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  liveExecutions();
  startForm();
  reloadWhileRunning();
  refreshCharts();
});
