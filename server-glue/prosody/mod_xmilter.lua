-- mod_xmilter.lua - Prosody glue for the xmilter content filter daemon
--
-- Hands stanzas worth checking to xmilterd over one Unix socket and applies
-- the verdict before the stanza is delivered:
--
--   message       message/{bare,full,host} on the recipient's host and
--                 pre-message/* on the sender's host (c2s, s2s, components)
--   subscription  presence subscribe/subscribed/unsubscribe/unsubscribed
--   transfer      iq set offering or carrying a file (SI, Jingle file
--                 transfer session-initiate, IBB open/data/close, OOB)
--   upload        XEP-0363 slot requests on an http_file_share component,
--                 and each stored upload before it is answered or served
--                 (the antivirus glue near the end: it also tears refused
--                 in-band streams down at both ends and can hold streams
--                 until they are scanned)
--
-- Only the kinds the daemon asked for in its HELLO are sent. The wire
-- protocol is docs/PROTOCOL.md (frames "VERB SP id SP length LF body").
--
-- Interface: load it from the global modules_enabled (one daemon link for
-- the whole server; module:set_global() below), and additionally inside a
-- Component section for an upload or MUC component. Settings are
-- documented in docs/PROSODY.md.
--
-- Waiting (xmilter_waiting = "hold", the default): a stanza being checked
-- is held (the hook returns true) and re-injected with core_post_stanza
-- after the verdict, marked as checked so it passes the second time. The
-- session goes on meanwhile, so its stanzas are checked pipelined. Per
-- session the order is kept: a local user's stanzas all pass pre-stanza
-- first, where those not checked wait behind held ones; while a c2s or
-- s2s session has stanzas held, its runner's run() is replaced by a
-- barrier that queues whatever else the session sends (stream close,
-- other elements) for its turn. A session with xmilter_hold_max entries
-- queued is not read until half are out. In "pause" mode c2s and s2s
-- sessions instead wait on an async.waiter inside their runner (one
-- stanza in flight per session); components, which have no runner, are
-- always held.
--
-- Per stanza on Prosody's thread: the envelope lines that do not change
-- are built once per session; the event's pieces (the stanza serialised
-- like tostring() but straight into them) go into one output buffer that
-- is written once per event-loop turn; an "action=accept" verdict needs no
-- parsing; no closure or timer is made per stanza.
--
-- Failure: nothing here may lose a stanza. Every hook body runs under pcall;
-- a Lua error, a daemon that is down, hung, too slow or over its in-flight
-- limit, or an unusable verdict each fall back to the per-kind failure
-- policy (accept = fail-open, reject = fail-closed). Error stanzas are never
-- filtered or bounced.

module:set_global();

local async = require "util.async";
local st = require "util.stanza";
local xml = require "util.xml";
local jid_split = require "util.jid".split;
local jid_bare = require "util.jid".bare;
local jid_host = require "util.jid".host;
local time_now = require "util.time".now;
local server = require "net.server";
local rostermanager = require "core.rostermanager";

local have_unix, unix = pcall(require, "socket.unix");
if have_unix and type(unix) == "function" then
	unix = { stream = unix }; -- older LuaSocket exports only the constructor
end
if type(unix) ~= "table" or not unix.stream then have_unix = false; end

local hosts = prosody.hosts;
local bare_sessions = prosody.bare_sessions;
local tostring, tonumber, type, pairs, ipairs, pcall = tostring, tonumber, type, pairs, ipairs, pcall;
local t_concat, s_format, os_date, m_floor = table.concat, string.format, os.date, math.floor;
local s_find, s_sub, s_byte = string.find, string.sub, string.byte;
local s_gsub, s_match = string.gsub, string.match;
local math_tointeger = math.tointeger;

local ALL_KINDS = { "message", "subscription", "transfer", "upload" };
local HEADER_MAX = 64;  -- header line limit including LF (PROTOCOL.md)

-- Error conditions of RFC 6120 8.3.3 with their usual error type. A
-- condition from the daemon must be one of these (it becomes an element
-- name); anything else is replaced by policy-violation.
local error_types = {
	["bad-request"] = "modify", ["conflict"] = "cancel",
	["feature-not-implemented"] = "cancel", ["forbidden"] = "auth",
	["gone"] = "cancel", ["internal-server-error"] = "wait",
	["item-not-found"] = "cancel", ["jid-malformed"] = "modify",
	["not-acceptable"] = "modify", ["not-allowed"] = "cancel",
	["not-authorized"] = "auth", ["policy-violation"] = "modify",
	["recipient-unavailable"] = "wait", ["redirect"] = "modify",
	["registration-required"] = "auth", ["remote-server-not-found"] = "cancel",
	["remote-server-timeout"] = "wait", ["resource-constraint"] = "wait",
	["service-unavailable"] = "cancel", ["subscription-required"] = "auth",
	["undefined-condition"] = "cancel", ["unexpected-request"] = "wait",
};

local subscription_types = {
	subscribe = true, subscribed = true, unsubscribe = true, unsubscribed = true,
};

---------------------------------------------------------------------------
-- Settings
---------------------------------------------------------------------------

local cfg = {};

-- list_to_set - {"a","b"} (or a util.set) as a plain lookup table
local function list_to_set(list)
	local set = {};
	if type(list) == "table" then
		if list.items then list = list:items(); end
		for k, v in pairs(list) do
			if type(k) == "number" then set[v] = true; else set[k] = v and true or nil; end
		end
	elseif type(list) == "string" then
		set[list] = true;
	end
	return set;
end

-- load_settings - read (or re-read) the xmilter_* options of the global section
local function load_settings()
	local n = {};
	n.socket = module:get_option_string("xmilter_socket", "/run/xmilter/xmilterd.sock");
	n.timeout = module:get_option_number("xmilter_timeout", 5);
	n.timeouts = {};
	local per_kind = module:get_option("xmilter_timeouts", {});
	for _, kind in ipairs(ALL_KINDS) do
		n.timeouts[kind] = tonumber(type(per_kind) == "table" and per_kind[kind]) or n.timeout;
	end
	n.on_failure = {};
	local pol = module:get_option("xmilter_on_failure", {});
	for _, kind in ipairs(ALL_KINDS) do
		local p = type(pol) == "table" and pol[kind] or (type(pol) == "string" and pol) or "accept";
		if p ~= "accept" and p ~= "reject" then
			module:log("error", "xmilter_on_failure: %s: %q is neither accept nor reject; using accept", kind, tostring(p));
			p = "accept";
		end
		n.on_failure[kind] = p;
	end
	n.failure_condition = module:get_option_string("xmilter_failure_condition", "resource-constraint");
	if not error_types[n.failure_condition] then
		module:log("error", "xmilter_failure_condition %q is not an XMPP error condition", n.failure_condition);
		n.failure_condition = "resource-constraint";
	end
	n.failure_text = module:get_option_string("xmilter_failure_text",
		"The server's content filter is unavailable; please try again later.");
	n.max_inflight = module:get_option_number("xmilter_max_inflight", 512);
	n.max_frame = module:get_option_number("xmilter_max_frame", 1048576);
	n.reconnect_min = module:get_option_number("xmilter_reconnect_min", 0.5);
	n.reconnect_max = module:get_option_number("xmilter_reconnect_max", 30);
	n.hello_timeout = module:get_option_number("xmilter_hello_timeout", 2);
	n.max_timeouts = module:get_option_number("xmilter_max_timeouts", 3);
	n.healthcheck_interval = module:get_option_number("xmilter_healthcheck_interval", 60);
	n.origins = list_to_set(module:get_option("xmilter_origins", { "c2s", "s2s", "component" }));
	n.kinds = list_to_set(module:get_option("xmilter_kinds", ALL_KINDS));
	n.roster = module:get_option_boolean("xmilter_roster", true);
	n.priority = module:get_option_number("xmilter_priority", 100);
	n.log_verdicts = module:get_option_boolean("xmilter_log_verdicts", false);
	n.waiting = module:get_option_string("xmilter_waiting", "hold");
	if n.waiting ~= "hold" and n.waiting ~= "pause" then
		module:log("error", "xmilter_waiting: %q is neither hold nor pause; using hold", n.waiting);
		n.waiting = "hold";
	end
	n.hold = n.waiting == "hold";
	n.hold_max = math.max(1, module:get_option_number("xmilter_hold_max", 32));
	cfg = n;
end
load_settings();

---------------------------------------------------------------------------
-- Counters (shown by xmilter:status() in the admin shell)
---------------------------------------------------------------------------

local stats = {
	sent = 0, accept = 0, modify = 0, reject = 0, discard = 0, quarantine = 0,
	failed = 0, timeouts = 0, late = 0, errors = 0, connects = 0,
};

---------------------------------------------------------------------------
-- Frames
---------------------------------------------------------------------------

-- parse_kv - key=value lines of BODY up to the first empty line.
-- Returns a table (first value of each key), the list of symbol lines, the
-- list of every value per key, and the text after the empty line (or nil).
local function parse_kv(body)
	local fields, lists = {}, {};
	local head, rest = body, nil;
	local blank = body:find("\n\n", 1, true);
	if blank then
		head, rest = body:sub(1, blank), body:sub(blank + 2);
	elseif body:sub(1, 1) == "\n" then
		head, rest = "", body:sub(2);
	end
	for line in head:gmatch("[^\n]+") do
		local k, v = line:match("^([a-z0-9%-]+)=(.*)$");
		if k then
			if fields[k] == nil then fields[k] = v; end
			local l = lists[k];
			if not l then l = {}; lists[k] = l; end
			l[#l + 1] = v;
		end
	end
	return fields, lists, rest;
end

-- new_framer - an incremental, bounded reader of protocol frames.
-- on_frame(verb, id, buf, pos, len) is called per frame: the body is
-- buf:sub(pos, pos + len - 1) (left to the callback, which often needs
-- less than the whole body). on_error(msg) is called once on a malformed
-- stream, after which the framer ignores further input.
local valid_verbs = { HELLO = true, FILTER = true, VERDICT = true, CANCEL = true,
	PING = true, PONG = true, BYE = true };
valid_verbs.RELEASE, valid_verbs.RELEASED = true, true; -- quarantine release
local function new_framer(max_frame, on_frame, on_error)
	local rest = nil;           -- unconsumed input (a partial frame)
	local chunks, nchunks, nbytes = nil, 0, 0; -- a large body arriving in pieces
	local need = 0;             -- bytes the partial frame needs at least
	local broken = false;
	local f = {};
	function f.set_max(n) max_frame = n; end
	function f.feed(data)
		if broken then return; end
		local buf;
		if chunks then
			nchunks = nchunks + 1;
			chunks[nchunks] = data;
			nbytes = nbytes + #data;
			if nbytes < need then return; end  -- body still incomplete
			buf = t_concat(chunks, "", 1, nchunks);
			chunks, nchunks = nil, 0;
		elseif rest then
			buf = rest .. data;
			rest = nil;
		else
			buf = data;
		end
		local pos, len = 1, #buf;
		while pos <= len do
			-- "VERB id length\n", anchored at pos
			local _, lf, verb, id, blen = s_find(buf, "^(%u+) (%d+) (%d+)\n", pos);
			if not lf then
				local nl = s_find(buf, "\n", pos, true);
				if nl or len - pos + 1 >= HEADER_MAX then
					broken = true;
					if nl and nl - pos + 1 <= HEADER_MAX then
						return on_error("malformed header");
					end
					return on_error("header line too long");
				end
				break; -- header incomplete
			end
			if lf - pos + 1 > HEADER_MAX then
				broken = true;
				return on_error("header line too long");
			end
			if not valid_verbs[verb] then
				broken = true;
				return on_error("malformed header");
			end
			local nid, nlen = #id, #blen;
			if nid > 20 or (nid > 1 and s_byte(id, 1) == 48) or nlen > 12
				or (nlen > 1 and s_byte(blen, 1) == 48) then
				broken = true;
				return on_error("bad number in header");
			end
			nid, nlen = math_tointeger(tonumber(id)), math_tointeger(tonumber(blen));
			if not nid or not nlen then
				broken = true;
				return on_error("number out of range");
			end
			if nlen > max_frame then
				broken = true;
				return on_error("frame larger than max-frame");
			end
			local bstart = lf + 1;
			if len - bstart + 1 < nlen then
				-- body incomplete: keep the frame from its header on
				need = nlen - (len - bstart + 1);
				if need > 4096 then
					chunks, nchunks, nbytes = { s_sub(buf, pos) }, 1, 0;
				else
					rest = s_sub(buf, pos);
				end
				return;
			end
			pos = bstart + nlen;
			on_frame(verb, nid, buf, bstart, nlen);
			if broken then return; end
		end
		if pos <= len then rest = s_sub(buf, pos); end
	end
	return f;
end

-- frame - the wire text of one frame
local function frame(verb, id, body)
	return verb .. " " .. id .. " " .. #body .. "\n" .. body;
end

---------------------------------------------------------------------------
-- The link to xmilterd
---------------------------------------------------------------------------

local link = {
	state = "down",     -- down | hello | ready
	conn = nil,
	gen = 0,            -- connection generation, to ignore stale callbacks
	next_id = 1,
	pending = {},       -- id -> request
	npending = 0,
	held = {},          -- requests queued while HELLO is outstanding
	sweep_timer = nil,
	reconnect_timer = nil,
	backoff = nil,
	max_frame = nil,
	max_inflight = nil,
	kinds = nil,        -- set of kinds the daemon wants (last known)
	status = "unknown", -- from the daemon's HELLO
	daemon = nil,
	filters = nil,
	consecutive_timeouts = 0,
	last_submit = 0,
	down_since = nil,
	last_error = nil,
};
local ready_q = {};     -- resolved requests whose callbacks are still to run
local running_ready = false;

local wants = list_to_set(ALL_KINDS); -- until a daemon says otherwise

-- update_wants - kinds to send: the daemon's list, limited by xmilter_kinds
local function update_wants()
	local w = {};
	for _, kind in ipairs(ALL_KINDS) do
		if cfg.kinds[kind] and (link.kinds == nil or link.kinds[kind]) then w[kind] = true; end
	end
	wants = w;
end
update_wants();

-- failure - the verdict the failure policy gives KIND, with REASON
local function failure(kind, reason)
	stats.failed = stats.failed + 1;
	if cfg.on_failure[kind] == "reject" then
		return { action = "reject", condition = cfg.failure_condition,
			text = cfg.failure_text, failure = reason };
	end
	return { action = "accept", failure = reason };
end

local drain_held; -- forward
local held = setmetatable({}, { __mode = "k" }); -- origin -> queue of held stanzas (Hooks)

-- run_ready - call the callbacks of resolved requests (outside the reader)
local function run_ready()
	if running_ready then return; end
	running_ready = true;
	local i = 1;
	while ready_q[i] do
		local req, res = ready_q[i], ready_q[i + 1];
		ready_q[i], ready_q[i + 1] = nil, nil;
		i = i + 2;
		local ok, err;
		if req.held then -- a held stanza: release what can go, in order
			req.res = res;
			local q = held[req.key];
			if q then q.nwait = q.nwait - 1; end
			ok, err = pcall(drain_held, req.key);
		else
			ok, err = pcall(req.cb, res);
		end
		if not ok then
			stats.errors = stats.errors + 1;
			module:log("error", "xmilter: error applying verdict for request %d: %s", req.id, err);
		end
	end
	running_ready = false;
end

-- resolve - finish REQ with RES; its callback runs from run_ready()
local function resolve(req, res)
	if req.done then return; end
	req.done = true;
	if link.pending[req.id] == req then
		link.pending[req.id] = nil;
		link.npending = link.npending - 1;
	end
	if res.failure then -- rare: always worth a debug line
		module:log("debug", "xmilter: id=%d kind=%s origin=%s failure=%s policy=%s ms=%.1f",
			req.id, req.kind, req.otype, res.failure, res.action, (time_now() - req.start) * 1000);
	elseif cfg.log_verdicts then
		module:log("debug", "xmilter: id=%d kind=%s origin=%s action=%s score=%s reason=%s ms=%.1f",
			req.id, req.kind, req.otype, res.action, res.score, res.reason, (time_now() - req.start) * 1000);
	end
	ready_q[#ready_q + 1] = req;
	ready_q[#ready_q + 1] = res;
end

-- Output batching. net.server's conn:write() re-arms the connection's write
-- timer and asks the poller for writability (an epoll_ctl system call) on
-- every call. Frames are collected here instead, as pieces in out_q (no
-- string is built per frame), and join the connection's buffer from the
-- onpredrain callback, which net.server calls just before it writes: all
-- frames queued in one event-loop turn leave in one write, with one
-- timer/poller update. (A 0-delay timer would cost up to 1 ms per stanza:
-- server_epoll sleeps min_wait for such timers.) Backends without
-- predrain get each frame written at once.
local out_q, out_n = {}, 0;  -- pieces of frames waiting for the next predrain
local out_armed = false;     -- conn:write() called, predrain not seen yet
local have_predrain = server.get_backend and server.get_backend() == "epoll";

-- out_arm - make sure the link's connection will call onpredrain
local function out_arm()
	if out_armed then return; end
	local conn = link.conn;
	if not conn then return; end
	out_armed = true;
	conn:write("");
end

-- write_raw - queue DATA (whole frames) on the link
local function write_raw(data)
	local conn = link.conn;
	if not conn then return; end
	if not have_predrain then
		conn:write(data);
		return;
	end
	out_n = out_n + 1;
	out_q[out_n] = data;
	out_arm();
end

-- send - queue one frame on the link
local function send(verb, id, body)
	write_raw(verb .. " " .. id .. " " .. #body .. "\n" .. body);
end

-- flush_out - hand the frames in out_q to the connection (from predrain,
-- where conn:write() only appends to the buffer being written)
local function flush_out(conn)
	out_armed = false;
	if out_n == 0 then return; end
	local data = out_n == 1 and out_q[1] or t_concat(out_q, "", 1, out_n);
	for i = 1, out_n do out_q[i] = nil; end
	out_n = 0;
	conn:write(data);
end

local connect; -- forward

-- schedule_reconnect - try again after the current backoff, then double it
local function schedule_reconnect()
	if link.reconnect_timer then return; end
	local delay = link.backoff or cfg.reconnect_min;
	link.backoff = math.min(delay * 2, cfg.reconnect_max);
	link.reconnect_timer = module:add_timer(delay, function ()
		link.reconnect_timer = nil;
		connect();
	end);
end

-- link_down - drop the connection; requests in flight get the failure policy
local function link_down(reason, no_reconnect)
	local conn = link.conn;
	local was = link.state;
	link.conn, link.state, link.framer = nil, "down", nil;
	for i = 1, out_n do out_q[i] = nil; end
	out_n, out_armed = 0, false;
	link.gen = link.gen + 1;
	link.consecutive_timeouts = 0;
	if conn then conn:close(); end
	if was ~= "down" then
		link.down_since = time_now();
		link.last_error = reason;
		module:log("warn", "xmilter: link to %s down: %s (%d in flight get the failure policy)",
			cfg.socket, tostring(reason), link.npending);
	end
	local victims = {};
	for _, req in pairs(link.pending) do victims[#victims + 1] = req; end
	table.sort(victims, function (a, b) return a.id < b.id; end);
	for _, req in ipairs(victims) do resolve(req, failure(req.kind, "disconnected")); end
	link.pending, link.npending, link.held = {}, 0, {};
	if not no_reconnect then schedule_reconnect(); end
	run_ready();
end

-- protocol_error - the daemon broke the protocol: say so and reconnect
local function protocol_error(msg)
	module:log("error", "xmilter: protocol error from daemon: %s", msg);
	if link.conn then
		local body = "code=400\nreason=" .. msg .. "\n";
		link.conn:write(frame("BYE", 0, body));
	end
	link_down("protocol error: " .. msg);
end

-- parse_verdict - the result table of a VERDICT body, or nil and an error
local verdict_keys = { action = true, score = true, reason = true, condition = true, text = true };
local function parse_verdict(body)
	local f, rest = {}, nil;
	local pos, len = 1, #body;
	while pos <= len do
		local lf = body:find("\n", pos, true) or (len + 1);
		if lf == pos then -- the empty line: a replacement stanza follows
			rest = body:sub(pos + 1);
			break;
		end
		local eq = body:find("=", pos, true);
		if eq and eq < lf then
			local k = body:sub(pos, eq - 1);
			if verdict_keys[k] and f[k] == nil then f[k] = body:sub(eq + 1, lf - 1); end
		end
		pos = lf + 1;
	end
	local action = f.action;
	if action ~= "accept" and action ~= "reject" and action ~= "discard"
		and action ~= "modify" and action ~= "quarantine" then
		return nil, "unknown action " .. tostring(action);
	end
	local res = { action = action, score = f.score, reason = f.reason };
	if f.condition and f.condition ~= "" then
		if error_types[f.condition] then
			res.condition = f.condition;
		else
			module:log("warn", "xmilter: daemon sent unknown error condition %q; using policy-violation", f.condition);
			res.condition = "policy-violation";
		end
	end
	if f.text and f.text ~= "" then res.text = f.text:sub(1, 1024); end
	if action == "modify" then
		if not rest or not rest:find("<", 1, true) then
			return nil, "modify without a replacement stanza";
		end
		res.replacement = rest;
	end
	return res;
end

-- on_hello - the daemon's HELLO: limits, kinds, status; release held requests
local function on_hello(body)
	local f, lists = parse_kv(body);
	if f.version ~= "1" then
		return protocol_error("daemon chose version " .. tostring(f.version));
	end
	local mf = math_tointeger(tonumber(f["max-frame"] or "")) or cfg.max_frame;
	local mi = math_tointeger(tonumber(f["max-inflight"] or "")) or cfg.max_inflight;
	link.max_frame = math.max(256, math.min(mf, cfg.max_frame));
	link.max_inflight = math.max(1, math.min(mi, cfg.max_inflight));
	if link.framer then link.framer.set_max(link.max_frame); end
	local kinds = {};
	for _, k in ipairs(lists.kind or {}) do kinds[k] = true; end
	link.kinds = kinds;
	update_wants();
	link.status = f.status or "ok";
	link.daemon = f.daemon;
	link.filters = lists.filter;
	link.can_release = false;
	for _, c in ipairs(lists.capability or {}) do
		if c == "release" then link.can_release = true; end
	end
	link.state = "ready";
	link.backoff = nil;
	link.down_since, link.last_error = nil, nil;
	local wanted = {};
	for _, k in ipairs(ALL_KINDS) do if wants[k] then wanted[#wanted + 1] = k; end end
	module:log(link.status == "ok" and "info" or "warn",
		"xmilter: connected to %s at %s: status=%s%s kinds=%s max-inflight=%d max-frame=%d",
		f.daemon or "a daemon without a name", cfg.socket, link.status,
		lists.reason and (" (" .. t_concat(lists.reason, "; ") .. ")") or "",
		#wanted > 0 and t_concat(wanted, ",") or "none", link.max_inflight, link.max_frame);
	local held = link.held;
	link.held = {};
	for _, req in ipairs(held) do
		if not req.done then
			if not wants[req.kind] then
				resolve(req, { action = "accept" });
			elseif #req.text > link.max_frame then
				resolve(req, failure(req.kind, "event larger than max-frame"));
			else
				send("FILTER", req.id, req.text);
				stats.sent = stats.sent + 1;
			end
			req.text, req.queued = nil, nil;
		end
	end
end

local send_notices, on_release; -- quarantine notices and release (below)

-- the result of a plain accept verdict (shared: results are never changed)
local ACCEPTED = { action = "accept" };

-- on_frame - one frame from the daemon (body: buf:sub(bpos, bpos + blen - 1))
local function on_frame(verb, id, buf, bpos, blen)
	if verb == "VERDICT" then
		if link.state ~= "ready" then return protocol_error("VERDICT before HELLO"); end
		local req = link.pending[id];
		if not req then
			if id >= link.next_id or id == 0 then
				return protocol_error("VERDICT for id " .. id .. " never issued");
			end
			stats.late = stats.late + 1; -- timed out or cancelled: drop it
			return;
		end
		-- fast path: "action=accept" first needs nothing else from the body
		-- (score, symbols and reason only matter for the debug log)
		if blen >= 14 and not cfg.log_verdicts and s_find(buf, "^action=accept\n", bpos) then
			stats.accept = stats.accept + 1;
			link.consecutive_timeouts = 0;
			return resolve(req, ACCEPTED);
		end
		local res, err = parse_verdict(s_sub(buf, bpos, bpos + blen - 1));
		if not res then
			module:log("error", "xmilter: bad verdict for id %d: %s", id, err);
			res = failure(req.kind, "bad verdict");
		else
			stats[res.action] = stats[res.action] + 1;
			if res.action == "quarantine" then
				send_notices(s_sub(buf, bpos, bpos + blen - 1));
			end
		end
		link.consecutive_timeouts = 0;
		resolve(req, res);
		return;
	end
	local body = s_sub(buf, bpos, bpos + blen - 1);
	if verb == "HELLO" then
		if link.state ~= "hello" then return protocol_error("unexpected HELLO"); end
		on_hello(body);
	elseif verb == "RELEASE" then
		if link.state ~= "ready" or not link.can_release then
			return protocol_error("RELEASE without the release capability");
		end
		on_release(id, body);
	elseif verb == "PING" then
		send("PONG", id, body);
	elseif verb == "PONG" then
		link.ping_out = nil;
	elseif verb == "BYE" then
		local f = parse_kv(body);
		link_down(("daemon closed the link: code=%s reason=%s"):format(tostring(f.code), tostring(f.reason)));
	else
		return protocol_error("unexpected " .. verb);
	end
end

local listeners = {};

function listeners.onconnect(conn)
	if conn ~= link.conn then return; end
	module:log("debug", "xmilter: socket connected");
end

function listeners.onpredrain(conn)
	if conn ~= link.conn then return; end
	flush_out(conn);
end

function listeners.onincoming(conn, data)
	if conn ~= link.conn or not link.framer then return; end
	link.framer.feed(data);
	run_ready();
end

function listeners.ondisconnect(conn, err)
	if conn ~= link.conn then return; end
	link_down(err or "connection closed");
end

function listeners.onreadtimeout(conn)
	if conn ~= link.conn then return; end
	-- a quiet link: check it is alive and keep it open
	send("PING", 0, "");
	return true;
end

-- connect - open the Unix socket and say HELLO
function connect()
	if link.state ~= "down" then return; end
	if not have_unix then
		module:log("error", "xmilter: LuaSocket has no socket.unix; cannot reach xmilterd");
		return schedule_reconnect();
	end
	local sock = unix.stream();
	sock:settimeout(0);
	local ok, err = sock:connect(cfg.socket);
	if not ok and err ~= "timeout" then
		sock:close();
		if link.last_error ~= err then
			module:log("warn", "xmilter: cannot connect to %s: %s (retrying)", cfg.socket, tostring(err));
			link.last_error = err;
		else
			module:log("debug", "xmilter: cannot connect to %s: %s", cfg.socket, tostring(err));
		end
		link.down_since = link.down_since or time_now();
		return schedule_reconnect();
	end
	local conn, werr = server.wrapclient(sock, cfg.socket, 0, listeners, "*a");
	if not conn then
		sock:close();
		module:log("warn", "xmilter: cannot use socket %s: %s", cfg.socket, tostring(werr));
		return schedule_reconnect();
	end
	stats.connects = stats.connects + 1;
	link.conn, link.state = conn, "hello";
	link.gen = link.gen + 1;
	link.next_id = 1;
	local gen = link.gen;
	-- callbacks of a framer that belongs to an older connection are ignored
	link.framer = new_framer(cfg.max_frame,
		function (verb, id, buf, bpos, blen) if link.gen == gen then on_frame(verb, id, buf, bpos, blen); end end,
		function (msg) if link.gen == gen then protocol_error(msg); end end);
	send("HELLO", 0, ("version=1\nmax-frame=%d\nmax-inflight=%d\nserver=prosody/%s\ncapability=modify\ncapability=release\n")
		:format(cfg.max_frame, cfg.max_inflight, tostring(prosody.version)));
	module:add_timer(cfg.hello_timeout, function ()
		if link.gen == gen and link.state == "hello" then
			link_down("no HELLO from the daemon within " .. cfg.hello_timeout .. " s");
		end
	end);
end

-- sweep - apply the failure policy to requests past their deadline
local function sweep()
	local now = time_now();
	if link.npending == 0 then
		-- idle: keep ticking for a while rather than re-arm per request
		if now - link.last_submit > 5 then
			link.sweep_timer = nil;
			return nil;
		end
		return 0.05;
	end
	local expired;
	for _, req in pairs(link.pending) do
		if req.deadline <= now then
			expired = expired or {};
			expired[#expired + 1] = req;
		end
	end
	if expired then
		table.sort(expired, function (a, b) return a.id < b.id; end);
		for _, req in ipairs(expired) do
			stats.timeouts = stats.timeouts + 1;
			if link.state == "ready" and not req.queued then send("CANCEL", req.id, ""); end
			resolve(req, failure(req.kind, "timeout"));
		end
		link.consecutive_timeouts = link.consecutive_timeouts + #expired;
		if cfg.max_timeouts > 0 and link.consecutive_timeouts >= cfg.max_timeouts then
			-- a hung daemon: stop feeding it; the HELLO timeout will
			-- catch it on reconnect so later stanzas fail without waiting
			link_down(link.consecutive_timeouts .. " requests timed out in a row");
		end
		run_ready();
	end
	return 0.05;
end

local build_event; -- forward

-- submit - ask the daemon about STANZA, a KIND from ORIGIN (INFO: its
-- facts). Returns a result at once when the failure policy decides (daemon
-- down, too many in flight, too large); otherwise returns nil and later
-- either calls CB(result) or, for a held stanza (REQ given: its queue
-- entry), sets REQ.res and drains its queue, exactly once.
local scratch = {};
local function submit(kind, info, origin, stanza, cb, req)
	local state = link.state;
	if state == "down" then
		return failure(kind, "daemon unavailable");
	end
	if link.npending >= (state == "ready" and link.max_inflight or cfg.max_inflight) then
		return failure(kind, "too many requests in flight");
	end
	local now = time_now();
	local max = link.max_frame or cfg.max_frame;
	local id = link.next_id;
	-- the FILTER frame: a header, then the event's pieces
	local direct = state == "ready" and have_predrain;
	local buf = direct and out_q or scratch;
	local hslot = direct and out_n + 1 or 1;
	local n, len = build_event(info, origin, stanza, now, buf, hslot);
	if len > max then
		for i = hslot, n do buf[i] = nil; end
		return failure(kind, "event larger than max-frame");
	end
	link.next_id = id + 1;
	link.last_submit = now;
	req = req or {};
	req.id, req.kind, req.otype, req.cb, req.start = id, kind, info.otype, cb, now;
	req.deadline = now + (cfg.timeouts[kind] or cfg.timeout);
	link.pending[id] = req;
	link.npending = link.npending + 1;
	if direct then
		buf[hslot] = "FILTER " .. id .. " " .. len .. "\n";
		out_n = n;
		out_arm();
		stats.sent = stats.sent + 1;
	else
		local text = t_concat(buf, "", 2, n);
		for i = 1, n do buf[i] = nil; end
		if state == "ready" then
			send("FILTER", id, text);
			stats.sent = stats.sent + 1;
		else
			req.text, req.queued = text, true;
			link.held[#link.held + 1] = req;
		end
	end
	if not link.sweep_timer then
		link.sweep_timer = module:add_timer(0.05, sweep);
	end
	return nil;
end

---------------------------------------------------------------------------
-- Events: envelope and stanza text
---------------------------------------------------------------------------

local last_sec, last_sec_text, last_ms, last_ms_text;
-- rfc3339 - UTC time with milliseconds, e.g. 2026-11-22T10:00:00.250Z
-- (the text is cached per millisecond, its date part per second)
local function rfc3339(t)
	local ms = m_floor(t * 1000);
	if ms == last_ms then return last_ms_text; end
	local sec = m_floor(t);
	if sec ~= last_sec then
		last_sec, last_sec_text = sec, os_date("!%Y-%m-%dT%H:%M:%S", sec);
	end
	last_ms, last_ms_text = ms, s_format("%s.%03dZ", last_sec_text, ms - sec * 1000);
	return last_ms_text;
end

-- clean - a value safe for an envelope line (no CR, LF, NUL)
local function clean(v)
	v = tostring(v);
	if v:find("[%z\r\n]") then v = v:gsub("[%z\r\n]", " "); end
	return v;
end

-- origin_type - c2s, s2s, component (external) or server (internal)
local function origin_type(origin)
	if not origin then return "server"; end
	local t = origin.type;
	if t == "c2s" then return "c2s"; end
	if t == "s2sin" or t == "s2sout" then return "s2s"; end
	if t == "component" and hosts[origin.host] ~= origin then return "component"; end
	return "server";
end

-- origin_ip - the peer address of a session, or nil
local function origin_ip(origin)
	if origin.ip then return origin.ip; end
	local conn = origin.conn;
	if conn and conn.ip then
		local ok, ip = pcall(conn.ip, conn);
		if ok then return ip; end
	end
	return nil;
end

-- Per-session facts (origin type, the envelope lines that do not change,
-- the runner), built on a session's first checked stanza and kept while
-- the session's type stays the same (c2s_unbound -> c2s, s2sin_unauthed
-- -> s2sin build them anew). Weak keys: they go with the session.
local origin_info = setmetatable({}, { __mode = "k" });
local SERVER_INFO = { otype = "server", head = "origin=server\n" };
local runner_mt = getmetatable(async.runner(function () end));

-- info_of - the facts of ORIGIN (a session, or nil for the server itself)
local function info_of(origin)
	if not origin then return SERVER_INFO; end
	local info = origin_info[origin];
	local t = origin.type;
	if info and info.type == t then return info; end
	local otype = origin_type(origin);
	local e = { "origin=", otype, "\n" };
	local n = 3;
	local bare;
	if otype == "c2s" then
		if origin.username and origin.host then
			bare = origin.username .. "@" .. origin.host;
			e[n + 1], e[n + 2], e[n + 3] = "auth=", clean(bare), "\n";
			n = n + 3;
		end
	elseif otype == "s2s" then
		local peer = t == "s2sin" and origin.from_host or origin.to_host;
		if peer then e[n + 1], e[n + 2], e[n + 3] = "peer=", clean(peer), "\n"; n = n + 3; end
	elseif otype == "component" then
		if origin.host then e[n + 1], e[n + 2], e[n + 3] = "peer=", clean(origin.host), "\n"; n = n + 3; end
	end
	if otype ~= "server" then
		local ip = origin_ip(origin);
		if ip then e[n + 1], e[n + 2], e[n + 3] = "ip=", clean(ip), "\n"; n = n + 3; end
		e[n + 1] = origin.secure and "tls=yes\n" or "tls=no\n";
	end
	local thread = origin.thread;
	if type(thread) ~= "table" or getmetatable(thread) ~= runner_mt then thread = nil; end
	info = { type = t, otype = otype, head = t_concat(e), bare = bare,
		-- c2s and s2s sessions process their stanzas in a util.async runner
		runner = (otype == "c2s" or otype == "s2s") and thread or nil };
	origin_info[origin] = info;
	return info;
end

-- roster_of - the recipient's subscription to the sender, when the
-- recipient is a local account; nil otherwise. FROM_BARE: the sender's
-- bare JID when already known.
local function roster_of(stanza, origin, from_bare)
	local to = stanza.attr.to;
	local to_bare;
	if to then
		to_bare = s_match(to, "^[^/]+"); -- an online account's key, if it is one
	elseif origin.username and origin.host then -- to self (core_post_stanza clears it)
		to_bare = origin.username .. "@" .. origin.host;
	else
		return nil;
	end
	if not from_bare then
		local from = stanza.attr.from;
		if not from then return nil; end
		from_bare = jid_bare(from);
	end
	local user = bare_sessions[to_bare];
	local roster = user and user.roster;
	if not roster then
		local node, host = jid_split(to_bare);
		if not node then return nil; end
		local h = hosts[host];
		if not h or h.type ~= "local" then return nil; end
		roster = rostermanager.load_roster(node, host);
		if not roster then return nil; end
	end
	local item = roster[from_bare];
	return item and item.subscription or "none";
end

-- serialize - STANZA's XML text as pieces in BUF after index N; returns
-- the last index used and the text's length. The same text as
-- tostring(stanza) (util.stanza's serialiser, mirrored: escaping,
-- namespaced attributes, xmlns only where it changes), but no string is
-- made for the stanza or its parts: the pieces go straight into the
-- output buffer, which is concatenated once per write.
local escape_chars = "['&<>\"]";
local escape_table = { ["'"] = "&apos;", ["\""] = "&quot;", ["<"] = "&lt;", [">"] = "&gt;", ["&"] = "&amp;" };
local function serialize(t, buf, n, parentns)
	local name, attr = t.name, t.attr;
	buf[n + 1], buf[n + 2] = "<", name;
	n = n + 2;
	local len = 1 + #name;
	local nsid = 0;
	for k, v in pairs(attr) do
		if s_find(k, "\1", 1, true) then
			local ns, attrk = s_match(k, "^([^\1]*)\1?(.*)$");
			nsid = nsid + 1;
			if s_find(ns, escape_chars) then ns = s_gsub(ns, escape_chars, escape_table); end
			if s_find(v, escape_chars) then v = s_gsub(v, escape_chars, escape_table); end
			local p = " xmlns:ns" .. nsid .. "='" .. ns .. "' ns" .. nsid .. ":" .. attrk .. "='" .. v .. "'";
			n = n + 1;
			buf[n] = p;
			len = len + #p;
		elseif k ~= "xmlns" or v ~= parentns then
			if s_find(v, escape_chars) then v = s_gsub(v, escape_chars, escape_table); end
			buf[n + 1], buf[n + 2], buf[n + 3], buf[n + 4], buf[n + 5] = " ", k, "='", v, "'";
			n = n + 5;
			len = len + 4 + #k + #v;
		end
	end
	local nchildren = #t;
	if nchildren == 0 then
		n = n + 1;
		buf[n] = "/>";
		return n, len + 2;
	end
	n = n + 1;
	buf[n] = ">";
	len = len + 1;
	local ns = attr.xmlns;
	for i = 1, nchildren do
		local child = t[i];
		if child.name then
			local clen;
			n, clen = serialize(child, buf, n, ns);
			len = len + clen;
		else
			if s_find(child, escape_chars) then child = s_gsub(child, escape_chars, escape_table); end
			n = n + 1;
			buf[n] = child;
			len = len + #child;
		end
	end
	buf[n + 1], buf[n + 2], buf[n + 3] = "</", name, ">";
	return n + 3, len + 3 + #name;
end

-- build_event (declared above) - the FILTER body (envelope lines, an
-- empty line, the stanza) as pieces in BUF after index N; returns the
-- last index used and the body's length
function build_event(info, origin, stanza, now, buf, n)
	local head = info.head;
	local len = #head;
	buf[n + 1] = head;
	n = n + 1;
	if cfg.roster then
		-- a c2s sender's bare JID is its account; the stanza's from is that
		local ok, sub = pcall(roster_of, stanza, origin, info.otype == "c2s" and info.bare or nil);
		if ok and sub then
			buf[n + 1], buf[n + 2], buf[n + 3] = "roster=", sub, "\n";
			n = n + 3;
			len = len + 8 + #sub;
		end
	end
	local ts = rfc3339(now);
	buf[n + 1], buf[n + 2], buf[n + 3] = "time=", ts, "\n\n";
	local slen;
	n, slen = serialize(stanza, buf, n + 3, nil);
	return n, len + 7 + #ts + slen;
end

---------------------------------------------------------------------------
-- Applying verdicts
---------------------------------------------------------------------------

-- bounce - an error reply to the sender of STANZA (never for errors)
local function bounce(origin, stanza, condition, text)
	if stanza.attr.type == "error" then return; end
	if stanza.name == "iq" and stanza.attr.type == "result" then return; end
	local reply = st.error_reply(stanza, error_types[condition] or "cancel", condition, text);
	if origin and origin.send then
		origin.send(reply);
	else
		prosody.core_route_stanza(nil, reply);
	end
end

-- strip_ns - drop xmlns attributes that repeat the inherited namespace
local function strip_ns(el, inherited)
	local ns = el.attr.xmlns;
	if ns == inherited then el.attr.xmlns = nil; else inherited = ns or inherited; end
	for _, child in ipairs(el.tags) do strip_ns(child, inherited); end
end

-- replace_children - copy the children of the daemon's replacement into
-- STANZA; its name and attributes (from, to, type, id, ...) stay as they are
local function replace_children(stanza, text)
	local repl, err = xml.parse(text);
	if not repl then return nil, "replacement does not parse: " .. tostring(err); end
	if repl.name ~= stanza.name then
		return nil, "replacement is a <" .. tostring(repl.name) .. ">, not a <" .. stanza.name .. ">";
	end
	local root_ns = repl.attr.xmlns;
	for _, child in ipairs(repl.tags) do strip_ns(child, root_ns); end
	for i = #stanza, 1, -1 do stanza[i] = nil; end
	stanza.tags = {};
	stanza.last_add = nil;
	for _, child in ipairs(repl) do
		stanza[#stanza + 1] = child;
		if type(child) == "table" then stanza.tags[#stanza.tags + 1] = child; end
	end
	return true;
end

local ibb_teardown, ibb_hold; -- forward (antivirus: IBB streams, below)

-- apply - carry out RES on the event; true means "stop processing"
local function apply(res, event, kind)
	local stanza, origin = event.stanza, event.origin;
	local action = res.action;
	if action == "modify" then
		local ok, err = replace_children(stanza, res.replacement);
		if ok then return nil; end
		module:log("error", "xmilter: cannot apply modify verdict: %s", err);
		res = failure(kind, "bad replacement");
		action = res.action;
	end
	if action == "accept" then
		if ibb_hold and ibb_hold(event) then return true; end -- store and forward
		return nil;
	end
	local is_request = stanza.name == "iq" and (stanza.attr.type == "get" or stanza.attr.type == "set");
	if ibb_teardown then pcall(ibb_teardown, stanza); end
	if action == "reject" then
		bounce(origin, stanza, res.condition or "policy-violation", res.text);
	elseif is_request then -- discard, quarantine: XMPP still wants an answer
		bounce(origin, stanza, res.condition or "service-unavailable", res.text);
	end
	return true;
end

---------------------------------------------------------------------------
-- Hooks
---------------------------------------------------------------------------

-- Stanzas seen once: true when checked (or not to be checked), "pass" when
-- only held to keep its place in its session's order.
local checked = setmetatable({}, { __mode = "k" });

-- Held stanzas, per origin (a session; false for none): a FIFO
-- { h = first index, t = last index, thread = the session's runner,
-- nwait = entries waiting for a verdict, [i] = entry }. An entry is one of
--   { held, event, kind, pre, key, res, ... }  a checked stanza (and its
--                     request to the daemon); res is its result, nil while
--                     the daemon decides
--   { event, pre, res = ACCEPTED }  held only to keep its place
--   { raw = input }   runner input (stream events, stanzas) that arrived
--                     while stanzas of the session were held, to be run
--                     in its turn
--   TOMB              an emptied place
-- (held itself is declared further up, for run_ready)
local drain_retry = setmetatable({}, { __mode = "k" });
local TOMB = {};
local hooked_hosts = {};  -- hosts carrying this module's hooks
local runner_run = runner_mt.run;
local core_post_stanza = prosody.core_post_stanza;
local is_stanza = st.is_stanza;
local kick; -- forward

-- passes_to_hook - will INPUT, run by ORIGIN's runner now, reach one of
-- this module's hooks before any other effect? Such input may go ahead:
-- the hook keeps it behind what is held. Anything else waits its turn.
local function passes_to_hook(origin, input)
	if not is_stanza(input) or input.attr.xmlns ~= nil then return false; end
	local t = origin.type;
	if t == "c2s" then
		-- every c2s stanza fires pre-stanza on the session's host first
		return hooked_hosts[origin.host] == true;
	end
	if t ~= "s2sin" and t ~= "s2sout" then return false; end
	-- s2s: messages fire message/* on the recipient's host
	local to = input.attr.to;
	return input.name == "message" and to ~= nil and hooked_hosts[jid_host(to)] == true;
end

-- barrier_run - a session runner's run() while stanzas of the session are
-- held: what the session sends meanwhile keeps its place behind them. A
-- session with xmilter_hold_max entries queued stops being read until
-- half of them are out (as a session waiting in its runner would).
local function barrier_run(self, input)
	local origin = self.data;
	local q = input ~= nil and held[origin];
	if not q or q.h > q.t
		or (self.state == "ready" and q.nwait < cfg.hold_max and passes_to_hook(origin, input)) then
		return runner_run(self, input);
	end
	local t = q.t + 1;
	q.t, q[t] = t, { raw = input };
	if t - q.h + 1 >= cfg.hold_max and not q.paused then
		local conn = origin.conn;
		if conn and conn.pause then
			q.paused = true;
			conn:pause();
		end
	end
	return true, "held", 0;
end

-- hold_queue - the FIFO of KEY (an origin or false), made if needed; a
-- session with a runner gets the barrier while it has one
local function hold_queue(key, info)
	local q = held[key];
	if q then return q; end
	q = { h = 1, t = 0, nwait = 0 };
	local thread = info and info.runner;
	if thread then
		q.thread = thread;
		thread.run = barrier_run;
	end
	held[key] = q;
	return q;
end

-- q_put - an entry into its place: the place being refilled while the
-- drain runs an entry (q.ins), else the end
local function q_put(q, entry)
	local i = q.ins;
	if i then
		q.ins, q[i] = nil, entry;
		return;
	end
	local t = q.t + 1;
	q.t, q[t] = t, entry;
end

-- reinject - deliver a held stanza again (it is marked: it passes)
local function reinject(entry)
	local event = entry.event;
	local origin, stanza = event.origin, event.stanza;
	if not origin then
		return prosody.core_route_stanza(nil, stanza);
	end
	if entry.pre then
		local full_jid = origin.full_jid;
		if full_jid then return core_post_stanza(origin, stanza, full_jid); end
		-- the session ended meanwhile: deliver without the sender's events
		if event.to_self and stanza.attr.to == nil and stanza.attr.from then
			stanza.attr.to = jid_bare(stanza.attr.from);
		end
	end
	return core_post_stanza(origin, stanza, nil);
end

-- release - apply ENTRY's result and deliver it if it may go
local function release(entry)
	local res = entry.res;
	local stop;
	if res ~= ACCEPTED then
		local ok;
		ok, stop = pcall(apply, res, entry.event, entry.kind);
		if not ok then
			stats.errors = stats.errors + 1;
			module:log("error", "xmilter: error applying verdict: %s", stop);
			stop = failure(entry.kind, "glue error").action ~= "accept";
			if stop then
				pcall(bounce, entry.event.origin, entry.event.stanza, cfg.failure_condition, cfg.failure_text);
			end
		end
	end
	if not stop then
		local ok, err = pcall(reinject, entry);
		if not ok then module:log("error", "xmilter: re-injection failed: %s", err); end
	end
end

local function schedule_drain(key)
	if drain_retry[key] then return; end
	drain_retry[key] = true;
	module:add_timer(0.01, function ()
		drain_retry[key] = nil;
		drain_held(key);
	end);
end

-- run_in_place - run queue Q's entry at I (raw input or a stanza to
-- release); whatever its hooks hold takes its place
local function run_in_place(q, i, entry)
	q[i], q.ins = TOMB, i;
	if entry.raw ~= nil then
		local ok, err = pcall(runner_run, q.thread, entry.raw);
		if not ok then module:log("error", "xmilter: re-injection failed: %s", err); end
	else
		release(entry);
	end
	q.ins = nil;
end

-- drain_held - release held stanzas of KEY (an origin or false) in arrival
-- order, as far as their verdicts are in. A session's runner must be idle
-- (not inside it, not waiting on something else): input it is still
-- working on came first. Then raw stanzas further on that will reach a
-- hook are run, so they are checked meanwhile (they keep their place).
-- FORCE (unloading): release everything now.
function drain_held(key, force)
	local q = held[key];
	if not q or q.draining then return; end
	q.draining = true;
	local thread = q.thread;
	while q.h <= q.t do
		local h = q.h;
		local entry = q[h];
		if entry == TOMB then
			q[h], q.h = nil, h + 1;
		else
			if entry.raw == nil and entry.res == nil then
				if not force then break; end -- waiting for its verdict
				entry.res = failure(entry.kind, "module unloaded");
			end
			if thread and thread.state ~= "ready" and not force then
				schedule_drain(key);
				break;
			end
			run_in_place(q, h, entry);
		end
	end
	if thread and thread.state == "ready" and not force then
		local origin = key;
		for i = q.h + 1, q.t do
			if q.nwait >= cfg.hold_max then break; end
			local entry = q[i];
			local raw = entry.raw;
			if raw ~= nil then
				if not passes_to_hook(origin, raw) then break; end
				run_in_place(q, i, entry);
				if thread.state ~= "ready" then break; end
			end
		end
	end
	q.draining = nil;
	local n = q.t - q.h + 1;
	if n <= 0 then
		held[key] = nil;
		if thread then thread.run = nil; end -- back to the runner's own run()
	end
	if q.paused and (n <= 0 or n <= cfg.hold_max / 2) then
		q.paused = nil;
		local conn = key and key.conn;
		if conn and conn.resume then
			conn:resume();
			-- input left in LuaSocket's buffer is not looked at by resume()
			local sock = conn.conn;
			if sock and type(sock.dirty) == "function" and sock:dirty() then
				module:add_timer(0, function () kick(key, 0); end);
			end
		end
	end
end

-- on_unbind - a local user's session ends (pre-resource-unbind: it is
-- still whole). Stanzas it sent that still wait in its queue run now, in
-- their places: the hooks hold them there (checked or not), and they are
-- released in order after the session has gone, without the sender's
-- pre- events. Stream events and other elements in the queue are dropped:
-- the stream is gone.
local function on_unbind(event)
	local session = event.session;
	local q = session and held[session];
	local thread = q and q.thread;
	if not thread or q.draining or thread.state ~= "ready" then return; end
	q.draining = true;
	for i = q.h, q.t do
		local entry = q[i];
		if entry ~= TOMB and entry.raw ~= nil then
			if is_stanza(entry.raw) then
				run_in_place(q, i, entry);
			else
				q[i] = TOMB;
			end
		end
	end
	q.draining = nil;
	drain_held(session);
end

-- hold_behind - hold a stanza that needs no check behind what its session
-- has held, so that the session's order is kept; nil when nothing is held
local function hold_behind(event, pre)
	local origin = event.origin;
	local q = origin and held[origin];
	if not q or q.h > q.t then return nil; end
	checked[event.stanza] = "pass";
	q_put(q, { event = event, pre = pre, res = ACCEPTED });
	return true;
end

-- kick - read input a paused session left buffered. c2s and s2s pause
-- their connection while their runner waits and resume it when it is ready;
-- in 0.12 resume() does not look at data already sitting in LuaSocket's
-- buffer, so a client that pipelined stanzas faster than verdicts came back
-- would stall until it sent more. Called after the runner has been told to
-- continue; retried for a few turns while the connection is still paused.
-- (Only in xmilter_waiting = "pause".)
function kick(origin, tries)
	local conn = origin.conn;
	local sock = conn and conn.conn;
	if not sock or type(sock.dirty) ~= "function" then return; end
	if conn._wantread == false then -- still paused (server_epoll)
		if tries < 5 then
			module:add_timer(0, function () kick(origin, tries + 1); end);
		end
		return;
	end
	local ok, dirty = pcall(sock.dirty, sock);
	if ok and dirty and type(conn.onreadable) == "function" then
		conn:onreadable();
	end
end

-- check - the body of every hook: ask the daemon, then hold the stanza
-- (or, in pause mode, wait in the session's runner) and apply the verdict
local function check(event, kind, pre)
	local stanza, origin = event.stanza, event.origin;
	local info = info_of(origin);
	local otype = info.otype;
	if not cfg.origins[otype] then return; end
	local key = origin or false;
	local q = held[key];
	if q and q.h > q.t then q = nil; end
	if not q and link.state == "down" then
		-- no daemon, nothing held: decide now, without building the event
		return apply(failure(kind, "daemon unavailable"), event, kind);
	end
	local runner = info.runner;

	if runner and not cfg.hold and not q and async.ready() then
		-- pause mode, inside the session's runner: only this session waits
		local result;
		local wait, done = async.waiter();
		local now_res = submit(kind, info, origin, stanza, function (res)
			result = res;
			done();
			-- input can only be left buffered by the read that paused us
			local sock = origin.conn and origin.conn.conn;
			if sock and type(sock.dirty) == "function" and sock:dirty() then
				module:add_timer(0, function () kick(origin, 0); end);
			end
		end);
		if now_res then
			result = now_res;
		else
			wait();
		end
		return apply(result, event, kind);
	end

	-- hold the stanza (return true) and re-inject it after the verdict;
	-- the session goes on with its next stanza meanwhile
	-- the queue entry is the request too
	-- (made with every field it will get: no rehash while it fills in)
	local entry = { held = true, event = event, pre = pre, key = key, kind = kind,
		id = 0, otype = otype, cb = false, start = 0, deadline = 0, done = false };
	local now_res = submit(kind, info, origin, stanza, nil, entry);
	if now_res and not q then
		return apply(now_res, event, kind);
	end
	q = q or hold_queue(key, runner and info);
	if now_res then
		entry.res = now_res;
	else
		q.nwait = q.nwait + 1;
	end
	q_put(q, entry);
	if now_res and not q.draining then
		if runner then schedule_drain(key); else drain_held(key); end
	end
	return true;
end

-- guarded - run check() under pcall; on a glue error use the failure policy
local function guarded(event, kind, pre)
	local ok, ret = pcall(check, event, kind, pre);
	if ok then return ret; end
	stats.errors = stats.errors + 1;
	module:log("error", "xmilter: error while checking a %s: %s", kind, tostring(ret));
	local res = failure(kind, "glue error");
	if res.action == "accept" then return nil; end
	pcall(bounce, event.origin, event.stanza, res.condition, res.text);
	return true;
end

-- is_transfer - true for an iq set offering or carrying a file
local function is_transfer(stanza)
	local c = stanza.tags[1];
	if not c then return false; end
	local ns = c.attr.xmlns;
	if ns == "http://jabber.org/protocol/si" or ns == "jabber:iq:oob" then return true; end
	if ns == "http://jabber.org/protocol/ibb" then
		return c.name == "open" or c.name == "data" or c.name == "close";
	end
	if ns == "urn:xmpp:jingle:1" and c.name == "jingle" and c.attr.action == "session-initiate" then
		for _, content in ipairs(c.tags) do
			for _, d in ipairs(content.tags) do
				local dns = d.attr.xmlns;
				if d.name == "description" and dns and dns:find("^urn:xmpp:jingle:apps:file%-transfer:") then
					return true;
				end
			end
		end
	end
	return false;
end

-- kind_of - the kind STANZA is checked as, or nil
local function kind_of(stanza)
	local name, stype = stanza.name, stanza.attr.type;
	if name == "message" then
		if stype ~= "error" and wants.message then return "message"; end
	elseif name == "presence" then
		if subscription_types[stype] and wants.subscription then return "subscription"; end
	elseif name == "iq" then
		if stype == "set" and wants.transfer and is_transfer(stanza) then return "transfer"; end
	end
	return nil;
end

-- the handlers: cheap tests first, then guarded()

-- on_pre_stanza - every stanza of a local user's session, first (hold
-- mode): checked kinds are held until their verdict, the rest waits behind
-- them when the session has stanzas held
local function on_pre_stanza(event)
	local stanza = event.stanza;
	if checked[stanza] ~= nil then return; end
	if cfg.hold then
		local kind = kind_of(stanza);
		if kind then
			checked[stanza] = true;
			return guarded(event, kind, true);
		end
	end
	return hold_behind(event, true);
end

local function on_message(event, pre)
	local stanza = event.stanza;
	if checked[stanza] ~= nil then return; end
	if stanza.attr.type == "error" or not wants.message then
		return hold_behind(event, pre);
	end
	checked[stanza] = true;
	return guarded(event, "message", pre);
end

local function on_presence(event, pre)
	local stanza = event.stanza;
	if checked[stanza] ~= nil then return; end
	if not subscription_types[stanza.attr.type] or not wants.subscription then
		return hold_behind(event, pre);
	end
	checked[stanza] = true;
	return guarded(event, "subscription", pre);
end

local function on_iq(event, pre)
	local stanza = event.stanza;
	if checked[stanza] ~= nil then return; end
	if stanza.attr.type ~= "set" or not wants.transfer or not is_transfer(stanza) then
		return hold_behind(event, pre);
	end
	checked[stanza] = true;
	return guarded(event, "transfer", pre);
end

local function on_upload(event)
	local stanza = event.stanza;
	if checked[stanza] == true then return; end
	checked[stanza] = true;
	if not wants.upload then return; end
	return guarded(event, "upload", false);
end

---------------------------------------------------------------------------
-- Antivirus glue: in-band streams and HTTP uploads (docs/PROSODY.md,
-- "Antivirus: in-band streams and uploads")
---------------------------------------------------------------------------

local NS_IBB = "http://jabber.org/protocol/ibb";
local teardown_n = 0;

-- Store and forward (xmilter_ibb_store_and_forward = true): accepted IBB
-- data is not delivered but held here, per stream, and acknowledged to
-- the sender on the receiver's behalf; when the close is accepted (the
-- daemon scanned the whole stream) the held chunks go out, then the
-- close. A refused chunk or close drops what is held. Bounded per stream
-- (xmilter_ibb_hold_max bytes of base64) and in time
-- (xmilter_ibb_hold_timeout seconds without data).
local sf_streams, sf_n, sf_swept = {}, 0, 0;

-- sf_key - the held-stream key of an IBB stanza (sender, receiver, sid)
local function sf_key(from, to, sid)
	return from .. "\0" .. to .. "\0" .. sid;
end

-- sf_sweep - forget streams idle too long (at most every 10 s)
local function sf_sweep(now)
	if now - sf_swept < 10 then return; end
	sf_swept = now;
	local timeout = module:get_option_number("xmilter_ibb_hold_timeout", 120);
	for key, q in pairs(sf_streams) do
		if now - q.last > timeout then
			sf_streams[key] = nil;
			module:log("info", "xmilter: dropped a held in-band stream idle for %ds", m_floor(now - q.last));
		end
	end
end

-- ibb_hold (declared above apply) - true when EVENT, an accepted IBB data
-- chunk, was held (and acknowledged); flushes the held chunks of a
-- stream whose close was accepted
function ibb_hold(event)
	if not module:get_option_boolean("xmilter_ibb_store_and_forward", false) then return nil; end
	local stanza = event.stanza;
	if stanza.name ~= "iq" or stanza.attr.type ~= "set" then return nil; end
	local c = stanza.tags[1];
	if not c or c.attr.xmlns ~= NS_IBB then return nil; end
	local from, to, sid = stanza.attr.from, stanza.attr.to, c.attr.sid;
	if not (from and to and sid) then return nil; end
	local now = time_now();
	sf_sweep(now);
	if c.name == "data" then
		local key = sf_key(from, to, sid);
		local q = sf_streams[key] or { bytes = 0, n = 0, last = now };
		local text = c:get_text() or "";
		if q.bytes + #text > module:get_option_number("xmilter_ibb_hold_max", 16 * 1024 * 1024) then
			sf_streams[key] = nil;
			bounce(event.origin, stanza, "resource-constraint", "The stream is too large to be held for scanning");
			pcall(ibb_teardown, stanza);
			return true;
		end
		q.n, q.bytes, q.last = q.n + 1, q.bytes + #text, now;
		q[q.n] = stanza;
		sf_streams[key] = q;
		local ack = st.reply(stanza);
		if event.origin and event.origin.send then event.origin.send(ack); else prosody.core_route_stanza(nil, ack); end
		return true;
	elseif c.name == "close" then
		local key = sf_key(from, to, sid);
		local q = sf_streams[key];
		if not q then key = sf_key(to, from, sid); q = sf_streams[key]; end
		if not q then return nil; end
		sf_streams[key] = nil;
		for i = 1, q.n do
			local d = q[i];
			sf_n = sf_n + 1;
			d.attr.id = "xmilter-sf-" .. sf_n; -- its answer is ours, not the sender's
			checked[d] = true;
			prosody.core_route_stanza(nil, d);
		end
		module:log("debug", "xmilter: released a held in-band stream (%d chunks)", q.n);
		return nil; -- the close goes on, after the data
	end
	return nil;
end

-- ibb_teardown (declared above apply) - a refused IBB open, data chunk or
-- close closes the stream at the receiver too (the sender gets the error
-- reply) and drops what store and forward held; the close is marked
-- checked so it passes straight through
function ibb_teardown(stanza)
	local c = stanza.tags[1];
	if not c or c.attr.xmlns ~= NS_IBB or (c.name ~= "data" and c.name ~= "open" and c.name ~= "close") then return; end
	local from, to, sid = stanza.attr.from, stanza.attr.to, c.attr.sid;
	if not (from and to and sid) then return; end
	sf_streams[sf_key(from, to, sid)] = nil;
	sf_streams[sf_key(to, from, sid)] = nil;
	teardown_n = teardown_n + 1;
	local close = st.iq({ type = "set", from = from, to = to, id = "xmilter-ibb-close-" .. teardown_n })
		:tag("close", { xmlns = NS_IBB, sid = sid }):up();
	checked[close] = true;
	module:log("info", "xmilter: closing in-band stream %s from %s to %s (refused)", sid, from, to);
	prosody.core_route_stanza(nil, close);
end

-- uploads: the slots whose file was refused, and those being scanned
local upload_blocked = require "util.cache".new(module:get_option_number("xmilter_upload_blocked_max", 10000));
local upload_pending = {};
local http_server = require "net.http.server";
local have_lfs, lfs = pcall(require, "lfs");
local b64_decode = require "util.encodings".base64.decode;
local json_decode = require "util.json".decode;

-- jwt_claims - the claims of the upload's bearer token (already verified
-- by mod_http_file_share when it answers 201), or {}
local function jwt_claims(authz)
	local p = authz and s_match(authz, "^Bearer [^.]+%.([^.]+)%.");
	if not p then return {}; end
	p = s_gsub(s_gsub(p, "-", "+"), "_", "/");
	p = p .. string.rep("=", (4 - #p % 4) % 4);
	local ok, t = pcall(json_decode, b64_decode(p) or "");
	return ok and type(t) == "table" and t or {};
end

-- move_file - rename SRC to DST, or copy and remove when they are on
-- different filesystems (rename cannot cross them); true or nil, error
local function move_file(src, dst)
	local ok, err = os.rename(src, dst);
	if ok then return true; end
	local i = io.open(src, "rb");
	if not i then return nil, err; end
	local o, oerr = io.open(dst, "wb");
	if not o then i:close(); return nil, tostring(err) .. "; " .. tostring(oerr); end
	while true do
		local chunk = i:read(65536);
		if not chunk then break; end
		if not o:write(chunk) then
			i:close(); o:close(); os.remove(dst);
			return nil, "copy to " .. dst .. " failed";
		end
	end
	i:close();
	if not o:close() then os.remove(dst); return nil, "copy to " .. dst .. " failed"; end
	return os.remove(src);
end

-- upload_done - act on the daemon's verdict RES for an upload stored in
-- FILE: refuse means delete (or quarantine) and block its slot
local function upload_done(res, slot, file, name)
	upload_pending[slot] = nil;
	local upload_quarantine_dir = module:get_option_string("xmilter_upload_quarantine_dir", nil);
	if res.action == "accept" or res.action == "modify" then return true; end
	upload_blocked:set(slot, res.reason or res.action);
	local ok, err;
	if upload_quarantine_dir and res.action == "quarantine" then
		ok, err = move_file(file, upload_quarantine_dir .. "/" .. slot .. "-" .. s_gsub(name or "file", "[/%z]", "_"));
	else
		ok, err = os.remove(file);
	end
	module:log("warn", "xmilter: upload %s refused (%s, %s): file %s%s", slot, res.action,
		tostring(res.reason), upload_quarantine_dir and res.action == "quarantine" and "quarantined" or "deleted",
		ok and "" or (" - FAILED: " .. tostring(err)));
	return false;
end

-- upload_check - ask the daemon about the file just stored for SLOT;
-- CB(allowed, res) now or later
local function upload_check(hmodule, event, slot, app_path, cb)
	local request = event.request;
	local file = require "core.storagemanager".olddm.getpath(slot, hmodule.host, "http_file_share", "bin");
	if file:sub(1, 1) ~= "/" and have_lfs then file = lfs.currentdir() .. "/" .. file; end
	local claims = jwt_claims(request.headers.authorization);
	-- the download URL as the slot gave it: the file share's base URL
	-- (http_file_share_base_url, else its http_url) and the slot path
	local base = hmodule:get_option_string("http_file_share_base_url", nil);
	if not base then
		local ok, u = pcall(function () return hmodule:http_url("file_share", "/file_share"); end);
		base = ok and u or ((request.secure and "https://" or "http://") .. (request.headers.host or hmodule.host) .. app_path);
	end
	local url = s_gsub(base, "/+$", "") .. s_sub(s_match(request.path, "^[^?]*"), #app_path + 1);
	local e = { "origin=c2s\n" };
	if type(claims.sub) == "string" then e[#e + 1] = "auth=" .. clean(jid_bare(claims.sub) or claims.sub) .. "\n"; end
	if request.ip then e[#e + 1] = "ip=" .. clean(request.ip) .. "\n"; end
	e[#e + 1] = request.secure and "tls=yes\n" or "tls=no\n";
	e[#e + 1] = "upload=stored\nfile-path=" .. clean(file) .. "\n";
	if claims.filesize then e[#e + 1] = "file-size=" .. clean(claims.filesize) .. "\n"; end
	if claims.filename then e[#e + 1] = "file-name=" .. clean(claims.filename) .. "\n"; end
	if claims.filetype then e[#e + 1] = "file-type=" .. clean(claims.filetype) .. "\n"; end
	e[#e + 1] = "file-url=" .. clean(url) .. "\n";
	local info = { otype = "c2s", head = t_concat(e) };
	local stanza = st.iq({ type = "set", from = type(claims.sub) == "string" and claims.sub or nil,
			to = hmodule.host, id = "xmilter-upload-" .. slot })
		:tag("request", { xmlns = "urn:xmpp:http:upload:0", filename = claims.filename and tostring(claims.filename) or nil,
			size = claims.filesize and tostring(claims.filesize) or nil,
			["content-type"] = claims.filetype and tostring(claims.filetype) or nil }):up();
	upload_pending[slot] = true;
	local function decide(res)
		local ok, err = pcall(upload_done, res, slot, file, claims.filename);
		if not ok then
			module:log("error", "xmilter: upload verdict: %s", tostring(err));
			upload_pending[slot] = nil;
		end
		cb(not ok or err, res);
	end
	local now_res = submit("upload", info, {}, stanza, decide);
	if now_res then decide(now_res); end
end

-- upload_slot - the slot id in an upload URL path under APP_PATH
local function upload_slot(path, app_path)
	local rest = path:sub(#app_path + 1);
	return s_match(rest, "^/([^/?]+)");
end

-- upload_hooks - on a host with mod_http_file_share: scan each upload
-- before the 201 goes out (the uploader then gets 403 for a refused
-- file), and answer downloads of refused or not-yet-scanned slots
local function upload_hooks(hmodule)
	if not module:get_option_boolean("xmilter_upload_scan", true) then return; end
	local host = hmodule:get_option_string("http_host", hmodule.host);
	local paths = hmodule:get_option("http_paths", {});
	local app_path = type(paths) == "table" and paths.file_share or "/file_share";
	app_path = s_gsub(app_path, "/+$", "");
	hmodule:hook_object_event(http_server, "PUT " .. host .. app_path .. "/*", function (event)
		if not wants.upload then return; end
		local response = event.response;
		if rawget(response, "xmilter_send") then return; end
		local slot = upload_slot(event.request.path, app_path);
		if not slot then return; end
		local orig_send = response.send;
		response.xmilter_send = orig_send;
		response.send = function (self, body)
			if self.status_code ~= 201 then return orig_send(self, body); end
			if async.ready() then
				local wait, done = async.waiter();
				local allowed, res;
				upload_check(hmodule, event, slot, app_path, function (a, r) allowed, res = a, r; done(); end);
				if allowed == nil then wait(); end
				if not allowed then
					self.status_code = 403;
					return orig_send(self, (res and res.text or "Refused by the server's content filter") .. "\n");
				end
				return orig_send(self, body);
			end
			-- no runner to wait in: answer now, keep downloads off until scanned
			local r = orig_send(self, body);
			upload_check(hmodule, event, slot, app_path, function () end);
			return r;
		end
	end, 10);
	hmodule:hook_object_event(http_server, "GET " .. host .. app_path .. "/*", function (event)
		local slot = upload_slot(event.request.path, app_path);
		if not slot then return; end
		if upload_blocked:get(slot) then return 403; end
		if upload_pending[slot] then
			event.response.headers.retry_after = "2";
			return 503;
		end
	end, 10);
	hmodule:log("debug", "xmilter: scanning uploads at %s%s", host, app_path);
end

-- ibb_hooks - answers to released store-and-forward chunks are the glue's
-- (it acknowledged them already): they stop here
local function ibb_hooks(hmodule)
	hmodule:hook("iq/full", function (event)
		local s = event.stanza;
		local id, t = s.attr.id, s.attr.type;
		if (t == "result" or t == "error") and id and s_sub(id, 1, 11) == "xmilter-sf-" then return true; end
	end, 1000);
end

-- add_host - hook one host (VirtualHost or Component) of this server
function module.add_host(hmodule)
	local prio = cfg.priority;
	hooked_hosts[hmodule.host] = true;
	hmodule:hook("pre-stanza", on_pre_stanza, prio);
	hmodule:hook("pre-resource-unbind", on_unbind, 1000);
	for _, to_type in ipairs({ "bare", "full", "host" }) do
		hmodule:hook("pre-message/" .. to_type, function (e) return on_message(e, true); end, prio);
		hmodule:hook("message/" .. to_type, function (e) return on_message(e, false); end, prio);
	end
	for _, to_type in ipairs({ "bare", "full", "host" }) do
		hmodule:hook("pre-presence/" .. to_type, function (e) return on_presence(e, true); end, prio);
		hmodule:hook("presence/" .. to_type, function (e) return on_presence(e, false); end, prio);
	end
	hmodule:hook("pre-iq/full", function (e) return on_iq(e, true); end, prio);
	hmodule:hook("iq/full", function (e) return on_iq(e, false); end, prio);
	hmodule:hook("iq-get/host/urn:xmpp:http:upload:0:request", on_upload, prio);
	upload_hooks(hmodule);
	ibb_hooks(hmodule);
	hmodule:log("debug", "xmilter: filtering stanzas for %s", hmodule.host);
end

---------------------------------------------------------------------------
-- Quarantine: notices and release (docs/QUARANTINE.md)
---------------------------------------------------------------------------

-- local_host_for - a local host to send from / post as: the host of
-- JID when it is ours, else any local VirtualHost
local function local_host_for(jid)
	local h = jid and jid_host(jid);
	if h and hosts[h] and hosts[h].type == "local" then return h; end
	for name, host in pairs(hosts) do
		if host.type == "local" then return name; end
	end
	return nil;
end

-- send_notices - the notice=JID TEXT lines of a quarantine verdict, each
-- sent as a chat message from the server (not filtered again)
function send_notices(body)
	for line in body:gmatch("[^\n]+") do
		local jid, text = line:match("^notice=(%S+) (.*)$");
		local from = jid and local_host_for(jid);
		if from then
			local msg = st.message({ from = from, to = jid, type = "chat",
				id = "xmilter-notice-" .. tostring(stats.quarantine) })
				:tag("body"):text(text):up();
			checked[msg] = true;
			local ok, err = pcall(core_post_stanza, hosts[from], msg);
			if not ok then module:log("error", "xmilter: cannot send notice to %s: %s", jid, tostring(err)); end
		end
	end
end

-- on_release - RELEASE id: re-inject the stored stanza as if it had passed
-- the filter, then confirm with RELEASED (result=ok once handed to the
-- server; failed when nothing was delivered; unknown after a Lua error)
function on_release(id, body)
	local _, _, text = parse_kv(body);
	local stanza, err;
	if text then stanza, err = xml.parse(text); else err = "no stanza in the event"; end
	if stanza and stanza.name ~= "message" and stanza.name ~= "presence" and stanza.name ~= "iq" then
		stanza, err = nil, "not a stanza: <" .. tostring(stanza.name) .. ">";
	end
	local from_host, to_host = stanza and jid_host(stanza.attr.from), stanza and jid_host(stanza.attr.to);
	local origin = stanza and (hosts[from_host or ""] or hosts[to_host or ""]);
	if stanza and not origin then
		stanza, err = nil, "neither its sender's nor its recipient's domain is served here";
	end
	if not stanza then
		module:log("warn", "xmilter: cannot release quarantined item %d: %s", id, tostring(err));
		send("RELEASED", id, "result=failed\nreason=" .. clean(tostring(err)) .. "\n");
		return;
	end
	if stanza.attr.xmlns == "jabber:client" or stanza.attr.xmlns == "jabber:server" then
		stanza.attr.xmlns = nil;
	end
	checked[stanza] = true; -- released: it passes this module's hooks
	local ok, perr = pcall(core_post_stanza, origin, stanza);
	if ok then
		stats.released = (stats.released or 0) + 1;
		module:log("info", "xmilter: released quarantined item %d: %s from %s to %s", id,
			stanza.name, tostring(stanza.attr.from), tostring(stanza.attr.to));
		send("RELEASED", id, "result=ok\n");
	else
		module:log("error", "xmilter: error releasing item %d: %s", id, tostring(perr));
		send("RELEASED", id, "result=unknown\nreason=glue error\n");
	end
end

---------------------------------------------------------------------------
-- Health check (HELLO healthcheck=1 on a separate, short connection)
---------------------------------------------------------------------------

local health = { state = "unknown", detail = nil, at = nil };

-- healthcheck - probe the daemon; CB(state, detail) with state ok,
-- degraded or down
local function healthcheck(cb)
	local finished = false;
	local conn;
	local function finish(state, detail)
		if finished then return; end
		finished = true;
		if conn then conn:close(); end
		local changed = state ~= health.state;
		health.state, health.detail, health.at = state, detail, time_now();
		module:log(state == "ok" and (changed and "info" or "debug") or "warn",
			"xmilter: health check: %s%s", state, detail and (" (" .. detail .. ")") or "");
		if cb then cb(state, detail); end
	end
	if not have_unix then return finish("down", "no socket.unix"); end
	local sock = unix.stream();
	sock:settimeout(0);
	local ok, err = sock:connect(cfg.socket);
	if not ok and err ~= "timeout" then
		sock:close();
		return finish("down", "connect: " .. tostring(err));
	end
	local framer = new_framer(65536, function (verb, _, buf, bpos, blen)
		local body = s_sub(buf, bpos, bpos + blen - 1);
		if verb == "HELLO" then
			local f, lists = parse_kv(body);
			local st_ = f.status or "ok";
			local detail = (f.daemon or "?") .. (lists.reason and ("; " .. t_concat(lists.reason, "; ")) or "");
			finish(st_ == "ok" and "ok" or "degraded", detail);
		elseif verb == "BYE" then
			local f = parse_kv(body);
			finish("down", "BYE code=" .. tostring(f.code) .. " " .. tostring(f.reason));
		end
	end, function (msg) finish("down", "protocol error: " .. msg); end);
	local l = {
		onincoming = function (_, data) framer.feed(data); end,
		ondisconnect = function (_, e) finish("down", "closed: " .. tostring(e)); end,
	};
	local werr;
	conn, werr = server.wrapclient(sock, cfg.socket, 0, l, "*a");
	if not conn then
		sock:close();
		return finish("down", tostring(werr));
	end
	conn:write(frame("HELLO", 0, ("version=1\nhealthcheck=1\nserver=prosody/%s\n"):format(tostring(prosody.version))));
	module:add_timer(cfg.hello_timeout, function () finish("down", "no answer"); end);
end

local function periodic_healthcheck()
	if cfg.healthcheck_interval <= 0 then return nil; end
	healthcheck();
	return cfg.healthcheck_interval;
end

---------------------------------------------------------------------------
-- Admin shell: xmilter:status(), xmilter:health()
---------------------------------------------------------------------------

local shell_env = module:shared("/*/admin_shell/env");
shell_env.xmilter = {};

function shell_env.xmilter:status() -- luacheck: ignore 212/self
	local print = self.session.print;
	print(("link: %s (%s) socket=%s daemon=%s status=%s in-flight=%d"):format(link.state,
		link.last_error or "no error", cfg.socket, tostring(link.daemon), link.status, link.npending));
	local k = {};
	for _, kind in ipairs(ALL_KINDS) do
		if wants[kind] then k[#k + 1] = kind .. "(" .. (cfg.on_failure[kind] == "reject" and "fail-closed" or "fail-open") .. ")"; end
	end
	print("kinds: " .. (#k > 0 and t_concat(k, " ") or "none"));
	print(("health: %s%s"):format(health.state, health.detail and (" (" .. health.detail .. ")") or ""));
	print(("counters: sent=%d accept=%d modify=%d reject=%d discard=%d quarantine=%d failed=%d timeouts=%d late=%d errors=%d connects=%d")
		:format(stats.sent, stats.accept, stats.modify, stats.reject, stats.discard, stats.quarantine,
			stats.failed, stats.timeouts, stats.late, stats.errors, stats.connects));
	return link.state == "ready", "xmilter link " .. link.state;
end

function shell_env.xmilter:health() -- luacheck: ignore 212/self
	local promise = require "util.promise";
	return promise.new(function (resolve_p)
		healthcheck(function (state, detail)
			resolve_p(state .. (detail and (" (" .. detail .. ")") or ""));
		end);
	end);
end

---------------------------------------------------------------------------
-- Life cycle
---------------------------------------------------------------------------

function module.load()
	connect();
	if cfg.healthcheck_interval > 0 then
		module:add_timer(cfg.healthcheck_interval, periodic_healthcheck);
	end
end

function module.unload()
	shell_env.xmilter = nil;
	-- release every waiting session with the failure policy
	send("BYE", 0, "code=200\nreason=module unloaded\n");
	link_down("module unloaded", true);
	-- release every held stanza (and give the runners their own run() back)
	local keys = {};
	for key in pairs(held) do keys[#keys + 1] = key; end
	for _, key in ipairs(keys) do drain_held(key, true); end
end

module:hook_global("config-reloaded", function ()
	local old_socket = cfg.socket;
	load_settings();
	update_wants();
	local pol = {};
	for _, kind in ipairs(ALL_KINDS) do pol[#pol + 1] = kind .. "=" .. cfg.on_failure[kind]; end
	module:log("info", "xmilter: settings reloaded (on failure: %s)", t_concat(pol, " "));
	if cfg.socket ~= old_socket and link.state ~= "down" then
		link_down("socket path changed");
	end
end);
