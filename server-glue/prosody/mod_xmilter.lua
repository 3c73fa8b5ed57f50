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
--   upload        XEP-0363 slot requests on an http_file_share component
--
-- Only the kinds the daemon asked for in its HELLO are sent. The wire
-- protocol is docs/PROTOCOL.md (frames "VERB SP id SP length LF body").
--
-- Interface: load it from the global modules_enabled (one daemon link for
-- the whole server; module:set_global() below), and additionally inside a
-- Component section for an upload or MUC component. Settings are
-- documented in docs/PROSODY.md.
--
-- Waiting: sessions that run inside a util.async runner (c2s, s2s) wait on
-- an async.waiter, so only that session pauses and its order is kept.
-- Component streams have no runner: their stanzas are held (the hook
-- returns true) and re-injected after the verdict, marked as checked so they
-- pass the second time; per component session the order is kept.
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
-- on_frame(verb, id, body) is called per frame; on_error(msg) once on a
-- malformed stream, after which the framer ignores further input.
local valid_verbs = { HELLO = true, FILTER = true, VERDICT = true, CANCEL = true,
	PING = true, PONG = true, BYE = true };
local function new_framer(max_frame, on_frame, on_error)
	local chunks, nbytes = {}, 0;
	local hdr_verb, hdr_id, hdr_len;  -- a parsed header waiting for its body
	local broken = false;
	local f = {};
	function f.set_max(n) max_frame = n; end
	function f.feed(data)
		if broken then return; end
		chunks[#chunks + 1] = data;
		nbytes = nbytes + #data;
		if hdr_len and nbytes < hdr_len then return; end  -- body still incomplete
		local buf = #chunks == 1 and chunks[1] or t_concat(chunks);
		chunks, nbytes = {}, 0;
		local pos, len = 1, #buf;
		while true do
			if not hdr_len then
				local lf = buf:find("\n", pos, true);
				if not lf or lf - pos + 1 > HEADER_MAX then
					if (lf and lf - pos + 1 or len - pos + 1) >= HEADER_MAX then
						broken = true;
						return on_error("header line too long");
					end
					break;
				end
				local verb, id, blen = buf:sub(pos, lf - 1):match("^(%u+) (%d+) (%d+)$");
				if not verb or not valid_verbs[verb] then
					broken = true;
					return on_error("malformed header");
				end
				if #id > 20 or (#id > 1 and id:sub(1, 1) == "0") or #blen > 12
					or (#blen > 1 and blen:sub(1, 1) == "0") then
					broken = true;
					return on_error("bad number in header");
				end
				local nid, nlen = math_tointeger(tonumber(id)), math_tointeger(tonumber(blen));
				if not nid or not nlen then
					broken = true;
					return on_error("number out of range");
				end
				if nlen > max_frame then
					broken = true;
					return on_error("frame larger than max-frame");
				end
				hdr_verb, hdr_id, hdr_len = verb, nid, nlen;
				pos = lf + 1;
			end
			if len - pos + 1 < hdr_len then break; end
			local body = hdr_len > 0 and buf:sub(pos, pos + hdr_len - 1) or "";
			pos = pos + hdr_len;
			local verb, id = hdr_verb, hdr_id;
			hdr_verb, hdr_id, hdr_len = nil, nil, nil;
			on_frame(verb, id, body);
			if broken then return; end
		end
		if pos <= len then
			chunks[1] = buf:sub(pos);
			nbytes = len - pos + 1;
		end
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

-- run_ready - call the callbacks of resolved requests (outside the reader)
local function run_ready()
	if running_ready then return; end
	running_ready = true;
	local i = 1;
	while ready_q[i] do
		local req, res = ready_q[i], ready_q[i + 1];
		ready_q[i], ready_q[i + 1] = nil, nil;
		i = i + 2;
		local ok, err = pcall(req.cb, res);
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
			req.id, req.kind, req.origin, res.failure, res.action, (time_now() - req.start) * 1000);
	elseif cfg.log_verdicts then
		module:log("debug", "xmilter: id=%d kind=%s origin=%s action=%s score=%s reason=%s ms=%.1f",
			req.id, req.kind, req.origin, res.action, res.score, res.reason, (time_now() - req.start) * 1000);
	end
	ready_q[#ready_q + 1] = req;
	ready_q[#ready_q + 1] = res;
end

-- Output batching. net.server's conn:write() re-arms the connection's write
-- timer and asks the poller for writability (an epoll_ctl system call) on
-- every call. Only the first frame after a flush goes through conn:write();
-- later ones wait in out_q and join the connection's buffer from the
-- onpredrain callback, which net.server calls just before it writes: all
-- frames queued in one event-loop turn leave in one write, with one
-- timer/poller update. (A 0-delay timer would cost up to 1 ms per stanza:
-- server_epoll sleeps min_wait for such timers.)
local out_q, out_n = {}, 0;  -- frames waiting for the next predrain
local out_armed = false;     -- conn:write() called, predrain not seen yet
local have_predrain = server.get_backend and server.get_backend() == "epoll";

-- write_raw - queue DATA (whole frames) on the link
local function write_raw(data)
	local conn = link.conn;
	if not conn then return; end
	if out_armed then
		out_n = out_n + 1;
		out_q[out_n] = data;
		return;
	end
	out_armed = have_predrain;
	conn:write(data);
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

-- on_frame - one frame from the daemon
local function on_frame(verb, id, body)
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
		local res, err = parse_verdict(body);
		if not res then
			module:log("error", "xmilter: bad verdict for id %d: %s", id, err);
			res = failure(req.kind, "bad verdict");
		else
			stats[res.action] = stats[res.action] + 1;
		end
		link.consecutive_timeouts = 0;
		resolve(req, res);
	elseif verb == "HELLO" then
		if link.state ~= "hello" then return protocol_error("unexpected HELLO"); end
		on_hello(body);
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
		function (verb, id, body) if link.gen == gen then on_frame(verb, id, body); end end,
		function (msg) if link.gen == gen then protocol_error(msg); end end);
	send("HELLO", 0, ("version=1\nmax-frame=%d\nmax-inflight=%d\nserver=prosody/%s\ncapability=modify\n")
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

-- submit - ask the daemon about TEXT (a KIND from an OTYPE origin). Returns a result at once when the
-- failure policy decides (daemon down, too many in flight, too large);
-- otherwise returns nil and calls CB(result) later, exactly once.
local function submit(kind, otype, text, cb)
	if link.state == "down" then
		return failure(kind, "daemon unavailable");
	end
	local limit = link.state == "ready" and link.max_inflight or cfg.max_inflight;
	if link.npending >= limit then
		return failure(kind, "too many requests in flight");
	end
	if #text > (link.max_frame or cfg.max_frame) then
		return failure(kind, "event larger than max-frame");
	end
	local id = link.next_id;
	link.next_id = id + 1;
	local now = time_now();
	link.last_submit = now;
	local req = { id = id, kind = kind, origin = otype, cb = cb, start = now,
		deadline = now + (cfg.timeouts[kind] or cfg.timeout) };
	link.pending[id] = req;
	link.npending = link.npending + 1;
	if link.state == "ready" then
		send("FILTER", id, text);
		stats.sent = stats.sent + 1;
	else
		req.text, req.queued = text, true;
		link.held[#link.held + 1] = req;
	end
	if not link.sweep_timer then
		link.sweep_timer = module:add_timer(0.05, sweep);
	end
	return nil;
end

---------------------------------------------------------------------------
-- Events: envelope and stanza text
---------------------------------------------------------------------------

local last_sec, last_sec_text;
-- rfc3339 - UTC time with milliseconds, e.g. 2026-11-22T10:00:00.250Z
local function rfc3339(t)
	local sec = m_floor(t);
	if sec ~= last_sec then
		last_sec, last_sec_text = sec, os_date("!%Y-%m-%dT%H:%M:%S", sec);
	end
	return s_format("%s.%03dZ", last_sec_text, m_floor((t - sec) * 1000));
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

-- roster_of - the recipient's subscription to the sender, when the
-- recipient is a local account; nil otherwise
local function roster_of(stanza, origin)
	local to = stanza.attr.to;
	local from = stanza.attr.from;
	if not to then -- to self (core_post_stanza clears it)
		if origin.username and origin.host then to = origin.username .. "@" .. origin.host; else return nil; end
	end
	local node, host = jid_split(to);
	if not node or not hosts[host] or hosts[host].type ~= "local" or not from then return nil; end
	local bare = node .. "@" .. host;
	local user = bare_sessions[bare];
	local roster = user and user.roster;
	if not roster then
		roster = rostermanager.load_roster(node, host);
		if not roster then return nil; end
	end
	local item = roster[jid_bare(from)];
	return item and item.subscription or "none";
end

-- build_event - the FILTER body: envelope lines, an empty line, the stanza
local function build_event(otype, origin, stanza)
	local e = { "origin=", otype, "\n" };
	local n = 3;
	if otype == "c2s" then
		if origin.username then
			e[n + 1], e[n + 2], e[n + 3] = "auth=", clean(origin.username .. "@" .. origin.host), "\n";
			n = n + 3;
		end
	elseif otype == "s2s" then
		local peer = origin.type == "s2sin" and origin.from_host or origin.to_host;
		if peer then e[n + 1], e[n + 2], e[n + 3] = "peer=", clean(peer), "\n"; n = n + 3; end
	elseif otype == "component" then
		if origin.host then e[n + 1], e[n + 2], e[n + 3] = "peer=", clean(origin.host), "\n"; n = n + 3; end
	end
	if otype ~= "server" then
		local ip = origin_ip(origin);
		if ip then e[n + 1], e[n + 2], e[n + 3] = "ip=", clean(ip), "\n"; n = n + 3; end
		e[n + 1] = origin.secure and "tls=yes\n" or "tls=no\n";
		n = n + 1;
	end
	if cfg.roster then
		local ok, sub = pcall(roster_of, stanza, origin);
		if ok and sub then e[n + 1], e[n + 2], e[n + 3] = "roster=", sub, "\n"; n = n + 3; end
	end
	e[n + 1], e[n + 2], e[n + 3] = "time=", rfc3339(time_now()), "\n\n";
	e[n + 4] = tostring(stanza);
	return t_concat(e);
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
		return nil;
	end
	local is_request = stanza.name == "iq" and (stanza.attr.type == "get" or stanza.attr.type == "set");
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

local checked = setmetatable({}, { __mode = "k" }); -- stanzas seen once
local held_by_origin = setmetatable({}, { __mode = "k" }); -- origin -> FIFO

-- reinject - deliver a held stanza again (it is marked: it passes)
local function reinject(entry)
	local event = entry.event;
	local origin = event.origin;
	if not origin then
		prosody.core_route_stanza(nil, event.stanza);
	else
		prosody.core_post_stanza(origin, event.stanza, entry.pre and origin.full_jid or nil);
	end
end

-- drain_held - apply verdicts of held stanzas in arrival order per origin
local function drain_held(origin)
	local q = held_by_origin[origin];
	while q and q[1] and q[1].res do
		local entry = table.remove(q, 1);
		local ok, stop = pcall(apply, entry.res, entry.event, entry.kind);
		if not ok then
			stats.errors = stats.errors + 1;
			module:log("error", "xmilter: error applying verdict: %s", stop);
			stop = failure(entry.kind, "glue error").action ~= "accept";
			if stop then
				pcall(bounce, origin, entry.event.stanza, cfg.failure_condition, cfg.failure_text);
			end
		end
		if not stop then
			local rok, rerr = pcall(reinject, entry);
			if not rok then module:log("error", "xmilter: re-injection failed: %s", rerr); end
		end
	end
	if q and not q[1] then held_by_origin[origin] = nil; end
end

-- kick - read input a paused session left buffered. c2s and s2s pause
-- their connection while their runner waits and resume it when it is ready;
-- in 0.12 resume() does not look at data already sitting in LuaSocket's
-- buffer, so a client that pipelined stanzas faster than verdicts came back
-- would stall until it sent more. Called after the runner has been told to
-- continue; retried for a few turns while the connection is still paused.
local function kick(origin, tries)
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

-- check - the body of every hook: ask the daemon, wait, apply
local function check(event, kind, pre)
	local stanza, origin = event.stanza, event.origin;
	local otype = origin_type(origin);
	if not cfg.origins[otype] then return; end
	if link.state == "down" and not held_by_origin[origin or false] then
		-- no daemon: decide now, without building the event
		return apply(failure(kind, "daemon unavailable"), event, kind);
	end
	local text = build_event(otype, origin, stanza);

	if async.ready() then
		-- inside the session's runner: only this session waits
		local result;
		local wait, done = async.waiter();
		local now_res = submit(kind, otype, text, function (res)
			result = res;
			done();
			-- input can only be left buffered by the read that paused us
			local sock = origin and origin.conn and origin.conn.conn;
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

	-- no runner (component streams, internal callers): hold and re-inject
	local q = held_by_origin[origin or false];
	local entry = { event = event, kind = kind, pre = pre };
	local now_res = submit(kind, otype, text, function (res)
		entry.res = res;
		drain_held(origin or false);
	end);
	if now_res and not q then
		return apply(now_res, event, kind);
	end
	entry.res = now_res;
	if not q then q = {}; held_by_origin[origin or false] = q; end
	q[#q + 1] = entry;
	if now_res then drain_held(origin or false); end
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

-- the handlers: cheap tests first, then guarded()
local function on_message(event, pre)
	local stanza = event.stanza;
	if checked[stanza] then return; end
	checked[stanza] = true;
	if stanza.attr.type == "error" or not wants.message then return; end
	return guarded(event, "message", pre);
end

local function on_presence(event, pre)
	local stanza = event.stanza;
	if not subscription_types[stanza.attr.type] or checked[stanza] then return; end
	checked[stanza] = true;
	if not wants.subscription then return; end
	return guarded(event, "subscription", pre);
end

local function on_iq(event, pre)
	local stanza = event.stanza;
	if stanza.attr.type ~= "set" or checked[stanza] then return; end
	if not is_transfer(stanza) then return; end
	checked[stanza] = true;
	if not wants.transfer then return; end
	return guarded(event, "transfer", pre);
end

local function on_upload(event)
	local stanza = event.stanza;
	if checked[stanza] then return; end
	checked[stanza] = true;
	if not wants.upload then return; end
	return guarded(event, "upload", false);
end

-- add_host - hook one host (VirtualHost or Component) of this server
function module.add_host(hmodule)
	local prio = cfg.priority;
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
	hmodule:log("debug", "xmilter: filtering stanzas for %s", hmodule.host);
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
	local framer = new_framer(65536, function (verb, _, body)
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
	for origin in pairs(held_by_origin) do drain_held(origin); end
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
