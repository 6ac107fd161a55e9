// The lookup-socket protocol between authd and the other daemons: frame
// encoding and decoding for both sides, and the asynchronous client.
#include "libmail/auth_lookup.hpp"
#include "libmail/secret.hpp"


#include <charconv>

#include <fmt/format.h>

namespace facteur::auth_lookup {
namespace {

// Every value here is short text; a longer one is a malformed request.
constexpr size_t kMaxValue = 4096;

void wipe_frame(ipc::Frame& frame, std::string_view name) {
    for (auto& [key, value] : frame.attributes)
        if (key == name) secret::wipe(value);
}

// An attribute that must be present; empty is allowed only where stated.
Result<std::string> required(const ipc::Frame& frame, std::string_view name, bool allow_empty = false) {
    auto value = frame.get(name);
    if (!value) return make_error(fmt::format("missing attribute {}", name));
    if (value->empty() && !allow_empty) return make_error(fmt::format("empty attribute {}", name));
    if (value->size() > kMaxValue) return make_error(fmt::format("attribute {} is too long", name));
    return std::string(*value);
}

std::string optional_attribute(const ipc::Frame& frame, std::string_view name) {
    auto value = frame.get(name);
    if (!value || value->size() > kMaxValue) return {};
    return std::string(*value);
}

ipc::Frame with_result(std::string_view result) {
    ipc::Frame frame;
    frame.add("result", std::string(result));
    return frame;
}

// The reply's `result`; error/tempfail/unknown become an error naming the reason.
Result<std::string> reply_result(const ipc::Frame& reply, std::initializer_list<std::string_view> accepted) {
    auto result = reply.get("result");
    if (!result) return make_error("authd reply without result");
    for (std::string_view wanted : accepted)
        if (*result == wanted) return std::string(*result);
    std::string reason = optional_attribute(reply, "reason");
    if (*result == "tempfail") return make_error(fmt::format("authd: temporary failure: {}", reason));
    if (*result == "error") return make_error(fmt::format("authd refused the request: {}", reason));
    return make_error(fmt::format("authd reply with unexpected result \"{}\"", *result));
}

void add_user_fields(ipc::Frame& frame, const UserInfo& user) {
    frame.add("address", user.address);
    frame.add("mail_path", user.mail_path);
    frame.add("format", user.format);
    frame.add("quota", std::to_string(user.quota_bytes));
    frame.add("enabled", user.enabled ? "yes" : "no");
    if (user.apop_secret) frame.add("apop_secret", *user.apop_secret);
}

Result<UserInfo> decode_user_fields(const ipc::Frame& reply) {
    UserInfo user;
    auto address = required(reply, "address");
    if (!address) return make_error(address.error());
    auto path = required(reply, "mail_path");
    if (!path) return make_error(path.error());
    auto format = required(reply, "format");
    if (!format) return make_error(format.error());
    if (*format != "maildir" && *format != "mbox") return make_error(fmt::format("unknown mailbox format {}", *format));
    auto quota = required(reply, "quota");
    if (!quota) return make_error(quota.error());
    auto [end, error] = std::from_chars(quota->data(), quota->data() + quota->size(), user.quota_bytes);
    if (error != std::errc() || end != quota->data() + quota->size()) return make_error("malformed quota");
    auto enabled = required(reply, "enabled");
    if (!enabled) return make_error(enabled.error());
    if (*enabled != "yes" && *enabled != "no") return make_error("malformed enabled flag");
    user.address = std::move(*address);
    user.mail_path = std::move(*path);
    user.format = std::move(*format);
    user.enabled = *enabled == "yes";
    if (auto secret = reply.get("apop_secret")) user.apop_secret = std::string(*secret);
    return user;
}

}  // namespace

VerifyRequest::~VerifyRequest() { secret::wipe(password); }

std::string_view outcome_name(Outcome outcome) {
    switch (outcome) {
    case Outcome::ok: return "ok";
    case Outcome::fail: return "fail";
    case Outcome::tempfail: return "tempfail";
    }
    return "fail";
}

std::string_view recipient_kind_name(RecipientKind kind) {
    switch (kind) {
    case RecipientKind::local_user: return "local_user";
    case RecipientKind::alias: return "alias";
    case RecipientKind::unknown_local: return "unknown_local";
    case RecipientKind::remote: return "remote";
    }
    return "unknown_local";
}

std::string mail_path(std::string_view mail_dir, const directory::User& user) {
    return fmt::format("{}/{}/{}", mail_dir, user.domain, user.localpart);
}

UserInfo user_info(const directory::User& user, std::string_view mail_dir, bool with_apop_secret) {
    UserInfo info;
    info.address = user.address();
    info.mail_path = mail_path(mail_dir, user);
    info.format = user.mailbox_format;
    info.quota_bytes = user.quota_bytes;
    info.enabled = user.enabled;
    if (with_apop_secret) info.apop_secret = user.apop_secret;
    return info;
}

namespace request {

ipc::Frame verify(const VerifyRequest& request) {
    ipc::Frame frame;
    frame.add("op", "verify").add("user", request.user).add("password", request.password);
    frame.add("service", request.service).add("client_ip", request.client_ip);
    return frame;
}

ipc::Frame apop(const ApopRequest& request) {
    ipc::Frame frame;
    frame.add("op", "apop").add("user", request.user).add("timestamp", request.timestamp);
    frame.add("digest", request.digest).add("service", request.service).add("client_ip", request.client_ip);
    return frame;
}

ipc::Frame find_user(std::string_view user) {
    ipc::Frame frame;
    frame.add("op", "user").add("user", std::string(user));
    return frame;
}

ipc::Frame resolve(std::string_view address) {
    ipc::Frame frame;
    frame.add("op", "resolve").add("address", std::string(address));
    return frame;
}

}  // namespace request

namespace reply {

Result<VerifyReply> verify(const ipc::Frame& reply) {
    auto result = reply.get("result");
    if (!result) return make_error("authd reply without result");
    VerifyReply out;
    if (*result == "ok") out.result = Outcome::ok;
    else if (*result == "fail") out.result = Outcome::fail;
    else if (*result == "tempfail") out.result = Outcome::tempfail;
    else return make_error(fmt::format("authd refused the request: {}", optional_attribute(reply, "reason")));
    out.user = optional_attribute(reply, "user");
    out.reason = optional_attribute(reply, "reason");
    if (out.result == Outcome::ok && out.user.empty()) return make_error("authd accepted without naming the user");
    return out;
}

Result<std::optional<UserInfo>> find_user(const ipc::Frame& reply) {
    auto result = reply_result(reply, {"ok", "notfound"});
    if (!result) return make_error(result.error());
    if (*result == "notfound") return std::optional<UserInfo>();
    auto user = decode_user_fields(reply);
    if (!user) return make_error(user.error());
    return std::optional<UserInfo>(std::move(*user));
}

Result<Resolution> resolve(const ipc::Frame& reply) {
    auto result = reply_result(reply, {"ok"});
    if (!result) return make_error(result.error());
    auto kind = reply.get("kind");
    if (!kind) return make_error("authd resolve reply without kind");
    Resolution resolution;
    if (*kind == "local_user") {
        resolution.kind = RecipientKind::local_user;
        auto user = decode_user_fields(reply);
        if (!user) return make_error(user.error());
        resolution.user = std::move(*user);
    } else if (*kind == "alias") {
        resolution.kind = RecipientKind::alias;
        for (std::string_view target : reply.get_all("target")) resolution.targets.emplace_back(target);
        if (resolution.targets.empty()) return make_error("authd alias reply without targets");
    } else if (*kind == "unknown_local") {
        resolution.kind = RecipientKind::unknown_local;
    } else if (*kind == "remote") {
        resolution.kind = RecipientKind::remote;
    } else {
        return make_error(fmt::format("authd resolve reply with unknown kind \"{}\"", *kind));
    }
    return resolution;
}

}  // namespace reply

namespace serve {

Result<Op> op(const ipc::Frame& request) {
    auto name = request.get("op");
    if (!name) return make_error("missing attribute op");
    if (*name == "verify") return Op::verify;
    if (*name == "apop") return Op::apop;
    if (*name == "user") return Op::user;
    if (*name == "resolve") return Op::resolve;
    return make_error("unknown op");
}

Result<VerifyRequest> verify(const ipc::Frame& request) {
    VerifyRequest out;
    auto user = required(request, "user");
    if (!user) return make_error(user.error());
    auto password = required(request, "password");
    if (!password) return make_error(password.error());
    out.user = std::move(*user);
    out.password = std::move(*password);
    secret::wipe(*password);  // moved-from; wiped in case it kept its buffer
    out.service = optional_attribute(request, "service");
    out.client_ip = optional_attribute(request, "client_ip");
    return out;
}

Result<ApopRequest> apop(const ipc::Frame& request) {
    ApopRequest out;
    auto user = required(request, "user");
    if (!user) return make_error(user.error());
    auto timestamp = required(request, "timestamp");
    if (!timestamp) return make_error(timestamp.error());
    auto digest = required(request, "digest");
    if (!digest) return make_error(digest.error());
    out.user = std::move(*user);
    out.timestamp = std::move(*timestamp);
    out.digest = std::move(*digest);
    out.service = optional_attribute(request, "service");
    out.client_ip = optional_attribute(request, "client_ip");
    return out;
}

Result<std::string> user(const ipc::Frame& request) { return required(request, "user"); }
Result<std::string> address(const ipc::Frame& request) { return required(request, "address"); }

ipc::Frame verify_reply(const VerifyReply& reply) {
    ipc::Frame frame = with_result(outcome_name(reply.result));
    frame.add("user", reply.user);
    if (!reply.reason.empty()) frame.add("reason", reply.reason);
    return frame;
}

ipc::Frame user_reply(const std::optional<UserInfo>& user) {
    if (!user) return with_result("notfound");
    ipc::Frame frame = with_result("ok");
    add_user_fields(frame, *user);
    return frame;
}

ipc::Frame resolve_reply(const Resolution& resolution) {
    ipc::Frame frame = with_result("ok");
    frame.add("kind", std::string(recipient_kind_name(resolution.kind)));
    if (resolution.kind == RecipientKind::local_user && resolution.user) add_user_fields(frame, *resolution.user);
    if (resolution.kind == RecipientKind::alias)
        for (const std::string& target : resolution.targets) frame.add("target", target);
    return frame;
}

ipc::Frame error_reply(std::string_view reason) {
    ipc::Frame frame = with_result("error");
    frame.add("reason", std::string(reason));
    return frame;
}

ipc::Frame tempfail_reply(std::string_view reason) {
    ipc::Frame frame = with_result("tempfail");
    frame.add("reason", std::string(reason));
    return frame;
}

}  // namespace serve

Client::Client(event::Loop& loop, std::string socket_path, std::chrono::milliseconds timeout)
    : client_(loop, std::move(socket_path), timeout) {}

void Client::verify(const VerifyRequest& request, std::function<void(Result<VerifyReply>)> done) {
    ipc::Frame frame = request::verify(request);
    client_.call(frame, [done = std::move(done)](Result<ipc::Frame> reply) {
        if (!reply) return done(make_error(reply.error()));
        done(reply::verify(*reply));
    });
    wipe_frame(frame, "password");
}

void Client::verify_apop(const ApopRequest& request, std::function<void(Result<VerifyReply>)> done) {
    client_.call(request::apop(request), [done = std::move(done)](Result<ipc::Frame> reply) {
        if (!reply) return done(make_error(reply.error()));
        done(reply::verify(*reply));
    });
}

void Client::find_user(std::string_view user, std::function<void(Result<std::optional<UserInfo>>)> done) {
    client_.call(request::find_user(user), [done = std::move(done)](Result<ipc::Frame> reply) {
        if (!reply) return done(make_error(reply.error()));
        done(reply::find_user(*reply));
    });
}

void Client::resolve(std::string_view address, std::function<void(Result<Resolution>)> done) {
    client_.call(request::resolve(address), [done = std::move(done)](Result<ipc::Frame> reply) {
        if (!reply) return done(make_error(reply.error()));
        done(reply::resolve(*reply));
    });
}

}  // namespace facteur::auth_lookup
