/// The chat page served at `/`: plain HTML and JavaScript, no build step (`/#ask=Q1|Q2` asks questions in turn). It streams replies from
/// `/v1/chat/completions` and shows, under each reply, what the chosen KV method did (decode speed, KV bytes
/// stored, KV bytes read per generated token, prompt tokens reused from the conversation cache).
let chatPageHTML = #"""
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>RocketKV chat</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
  body { font: 15px/1.45 system-ui, sans-serif; margin: 0; background: #f6f7f9; color: #1d2330; }
  header { display: flex; gap: 12px; align-items: center; padding: 10px 16px; background: #1d2330; color: #fff; flex-wrap: wrap; }
  header h1 { font-size: 17px; margin: 0 12px 0 0; }
  header label { font-size: 13px; opacity: .9; }
  select, input { font: inherit; padding: 3px 6px; border-radius: 4px; border: 1px solid #9aa3b5; }
  #budget, #maxTokens { width: 70px; }
  main { max-width: 860px; margin: 0 auto; padding: 16px; }
  .turn { margin: 10px 0; padding: 10px 14px; border-radius: 8px; white-space: pre-wrap; }
  .user { background: #dfe8ff; margin-left: 80px; }
  .assistant { background: #fff; border: 1px solid #dde1e8; margin-right: 80px; }
  .figures { font: 12px ui-monospace, monospace; color: #5a6375; margin-top: 6px; white-space: normal; }
  form { display: flex; gap: 8px; margin-top: 14px; }
  textarea { flex: 1; font: inherit; padding: 8px; border-radius: 6px; border: 1px solid #9aa3b5; min-height: 48px; }
  button { font: inherit; padding: 0 18px; border-radius: 6px; border: 0; background: #3859d6; color: #fff; cursor: pointer; }
  button:disabled { background: #9aa3b5; }
  #status { font-size: 12px; margin-left: auto; }
</style>
</head>
<body>
<header>
  <h1>RocketKV</h1>
  <label>model <select id="model"></select></label>
  <label>KV method <select id="method"></select></label>
  <label>budget <input id="budget" type="number" min="16" step="16" value="256"></label>
  <label>max tokens <input id="maxTokens" type="number" min="1" value="128"></label>
  <button id="reset" type="button">New chat</button>
  <span id="status">connecting…</span>
</header>
<main>
  <div id="log"></div>
  <form id="form">
    <textarea id="input" placeholder="Ask something…"></textarea>
    <button id="send">Send</button>
  </form>
</main>
<script>
const $ = id => document.getElementById(id);
let messages = [];

async function init() {
  while (!(await fetch('/health')).ok) {
    $('status').textContent = 'loading model…';
    await new Promise(done => setTimeout(done, 1000));
  }
  const models = await (await fetch('/v1/models')).json();
  for (const m of models.data) {
    $('model').add(new Option(m.id, m.id));
    for (const name of m.rocketkv.kv_methods) $('method').add(new Option(name, name));
    $('method').value = m.rocketkv.default_kv.method;
    if (m.rocketkv.default_kv.budget) $('budget').value = m.rocketkv.default_kv.budget;
    $('status').textContent = `${m.rocketkv.architecture}, context ${m.rocketkv.context_length}`;
  }
}

function turn(role, text) {
  const div = document.createElement('div');
  div.className = 'turn ' + role;
  div.textContent = text;
  $('log').appendChild(div);
  return div;
}

function figures(kv, usage) {
  const mib = b => (b / 1048576).toFixed(2) + ' MiB', kib = b => (b / 1024).toFixed(1) + ' KiB';
  const parts = [`${kv.method}${kv.budget ? '@' + kv.budget : ''}`,
                 `decode ${kv.decode_tokens_per_second.toFixed(1)} tok/s`,
                 `KV stored ${mib(kv.stored_bytes)}`,
                 `KV read ${kib(kv.read_bytes_per_token)}/token`];
  if (usage) parts.push(`prompt ${usage.prompt_tokens} (cached ${usage.prompt_tokens_details.cached_tokens}), reply ${usage.completion_tokens} tokens`);
  return parts.join(' · ');
}

async function send(text) {
  messages.push({ role: 'user', content: text });
  turn('user', text);
  const reply = turn('assistant', '');
  const body = { model: $('model').value, messages, stream: true, stream_options: { include_usage: true },
                 temperature: 0, max_tokens: Number($('maxTokens').value), kv: { method: $('method').value, budget: Number($('budget').value) } };
  const response = await fetch('/v1/chat/completions', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  if (!response.ok) { reply.textContent = 'error: ' + (await response.json()).error.message; messages.pop(); return; }
  const reader = response.body.getReader(), decoder = new TextDecoder();
  let buffer = '', content = '', kv = null, usage = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf('\n\n')) >= 0) {
      const line = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
      if (!line.startsWith('data: ') || line === 'data: [DONE]') continue;
      const chunk = JSON.parse(line.slice(6));
      if (chunk.error) { content += '\n[error: ' + chunk.error.message + ']'; continue; }
      if (chunk.usage) usage = chunk.usage;
      if (chunk.kv) kv = chunk.kv;
      for (const choice of chunk.choices) if (choice.delta.content) content += choice.delta.content;
      reply.textContent = content;
    }
  }
  messages.push({ role: 'assistant', content });
  if (kv) { const f = document.createElement('div'); f.className = 'figures'; f.textContent = figures(kv, usage); reply.appendChild(f); }
}

$('form').addEventListener('submit', async event => {
  event.preventDefault();
  const text = $('input').value.trim();
  if (!text) return;
  $('input').value = ''; $('send').disabled = true;
  try { await send(text); } finally { $('send').disabled = false; $('input').focus(); }
});
$('input').addEventListener('keydown', e => { if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); $('form').requestSubmit(); } });
$('reset').addEventListener('click', () => { messages = []; $('log').textContent = ''; });
// A link can carry questions to ask in turn: /#ask=First%20question|Second%20question
init().then(async () => {
  if (!location.hash.startsWith('#ask=')) return;
  for (const q of location.hash.slice(5).split('|')) await send(decodeURIComponent(q));
});
</script>
</body>
</html>
"""#
