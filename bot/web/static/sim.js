// Sandbox chat simulator: pick a room and a member, type as them, watch the room live.
"use strict";
(function () {
  const csrf = window.qunbot ? window.qunbot.csrf
    : document.querySelector('meta[name="csrf-token"]').content;
  const $ = (id) => document.getElementById(id);
  const roomSel = $("sim-room"), memberSel = $("sim-member"), inviterSel = $("join-inviter");
  const log = $("sim-log"), status = $("sim-status");
  let world = null, socket = null, watching = null;
  const PRIVATE = "";  // room value for "private chat with the bot"

  async function api(path, payload) {
    const resp = await fetch(path, {
      method: payload ? "POST" : "GET", credentials: "same-origin",
      headers: payload ? { "Content-Type": "application/json", "X-CSRF-Token": csrf } : {},
      body: payload ? JSON.stringify(payload) : undefined,
    });
    let data = {};
    try { data = await resp.json(); } catch (e) { data = { error: resp.statusText }; }
    if (!resp.ok) throw new Error(data.error || resp.statusText);
    return data;
  }

  function option(value, label, selected) {
    const o = document.createElement("option");
    o.value = value; o.textContent = label; o.selected = !!selected;
    return o;
  }

  function currentRoom() { return world.rooms.find((r) => r.id === roomSel.value); }

  function fillMembers(keep) {
    const room = currentRoom();
    const people = room ? room.members : world.contacts;
    memberSel.replaceChildren(...people.map((m) => option(m.id, `${m.name} (${m.id})`, m.id === keep)));
    inviterSel.replaceChildren(option("", "—"), option("qrcode", "扫码 / QR code"),
      ...people.map((m) => option(m.id, m.name)));
  }

  async function loadWorld(keepRoom, keepMember) {
    world = await api("/api/sim/world");
    const rooms = world.rooms.map((r) =>
      option(r.id, `${r.topic}${r.served ? "" : " (not served)"} — ${r.id}`, r.id === keepRoom));
    roomSel.replaceChildren(...rooms, option(PRIVATE, "私聊机器人 / private chat", keepRoom === PRIVATE));
    fillMembers(keepMember);
    status.textContent = world.connected ? "" : "bot not connected";
    watch();
  }

  function conversation() { return roomSel.value || memberSel.value; }

  function add(item) {
    const li = document.createElement("li");
    if (item.type === "system") {
      li.className = "system"; li.textContent = item.text;
    } else {
      li.className = item.from_bot ? "bot" : (item.sender === memberSel.value ? "me" : "");
      li.dataset.sender = item.sender;
      const who = document.createElement("span");
      who.className = "who"; who.textContent = item.name;
      const bubble = document.createElement("span");
      bubble.className = "bubble";
      bubble.textContent = item.text;  // a reply's @mention is already part of its text
      li.append(who, bubble);
    }
    log.append(li);
    log.scrollTop = log.scrollHeight;
  }

  function watch() {
    const conv = conversation();
    if (conv === watching && socket && socket.readyState <= 1) return;
    if (socket) socket.close();
    watching = conv; log.replaceChildren();
    if (!conv) return;
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    socket = new WebSocket(`${proto}//${location.host}/ws/sim?conversation=${encodeURIComponent(conv)}`);
    socket.onopen = () => { log.dataset.ready = "1"; };
    socket.onmessage = (ev) => {
      const data = JSON.parse(ev.data);
      if (data.type === "history") data.messages.forEach(add); else add(data);
    };
    socket.onclose = () => { delete log.dataset.ready; };
  }

  roomSel.addEventListener("change", () => { fillMembers(); watch(); });
  memberSel.addEventListener("change", () => { if (!roomSel.value) watch(); });

  $("sim-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const input = $("sim-text");
    const text = input.value;
    if (!text.trim()) return;
    try {
      await api("/api/sim/say", { room: roomSel.value, member: memberSel.value, text,
                                  mention: $("sim-mention").checked });
      input.value = ""; status.textContent = "";
    } catch (e) { status.textContent = e.message; }
  });

  $("join-btn").addEventListener("click", async () => {
    const id = $("join-id").value.trim(), name = $("join-name").value.trim();
    try {
      await api("/api/sim/join", { room: roomSel.value, id, name, inviter: inviterSel.value });
      $("join-id").value = ""; $("join-name").value = "";
      await loadWorld(roomSel.value, id);
    } catch (e) { status.textContent = e.message; }
  });

  $("leave-btn").addEventListener("click", async () => {
    try {
      await api("/api/sim/leave", { room: roomSel.value, member: memberSel.value });
      await loadWorld(roomSel.value);
    } catch (e) { status.textContent = e.message; }
  });

  loadWorld().catch((e) => { status.textContent = e.message; });
})();
