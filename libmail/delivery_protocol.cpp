// qmgr -> deliverd request and its reply: encoding, and validation of every
// field on decode (an invalid request is refused, never guessed at).
#include "libmail/delivery_protocol.hpp"

#include <fmt/format.h>

#include "libmail/maildir.hpp"
#include "libmail/queue.hpp"

namespace facteur::delivery {
namespace {

// Generous bounds: an RFC 5321 path is at most 256 octets, but a request is
// not the place to enforce SMTP's limits, only to refuse nonsense.
constexpr size_t kMaxAddress = 2048;
constexpr size_t kMaxPath = 4096;
constexpr size_t kMaxCommand = 8192;
constexpr size_t kMaxTargets = 10000;


// An absolute path without "." or ".." components or control characters:
// deliverd writes where it is told, so the path must mean what it says.
bool valid_absolute_path(std::string_view path) {
    if (path.empty() || path.size() > kMaxPath || path[0] != '/' || has_control(path)) return false;
    size_t start = 1;
    while (start <= path.size()) {
        size_t end = path.find('/', start);
        if (end == std::string_view::npos) end = path.size();
        std::string_view component = path.substr(start, end - start);
        if (component == "." || component == "..") return false;
        start = end + 1;
    }
    return true;
}

Result<std::string> required(const ipc::Frame& frame, std::string_view name, std::string_view where) {
    auto value = frame.get(name);
    if (!value) return make_error(fmt::format("{}: missing {}", where, name));
    return std::string(*value);
}



Result<Target> decode_target(std::string_view data, size_t index) {
    std::string where = fmt::format("delivery {}", index);
    auto frame = decode_nested(data, where);
    if (!frame) return make_error(frame.error());
    Target target;

    auto recipient = required(*frame, "recipient", where);
    if (!recipient) return make_error(recipient.error());
    if (recipient->empty() || recipient->size() > kMaxAddress || has_control(*recipient))
        return make_error(fmt::format("{}: invalid recipient", where));
    target.recipient = std::move(recipient).value();

    auto kind = required(*frame, "kind", where);
    if (!kind) return make_error(kind.error());
    if (*kind == "mailbox") {
        target.kind = Kind::mailbox;
        auto user = required(*frame, "user", where);
        if (!user) return make_error(user.error());
        if (user->empty() || user->size() > kMaxAddress || has_control(*user))
            return make_error(fmt::format("{}: invalid user", where));
        target.user = std::move(user).value();

        auto mail_path = required(*frame, "mail_path", where);
        if (!mail_path) return make_error(mail_path.error());
        if (!valid_absolute_path(*mail_path))
            return make_error(fmt::format("{}: mail_path must be an absolute path without . or ..", where));
        target.mail_path = std::move(mail_path).value();

        auto format = required(*frame, "format", where);
        if (!format) return make_error(format.error());
        if (*format != "maildir" && *format != "mbox")
            return make_error(fmt::format("{}: unknown mailbox format '{}'", where, *format));
        target.format = std::move(format).value();

        auto quota = required(*frame, "quota", where);
        if (!quota) return make_error(quota.error());
        auto bytes = parse_decimal(*quota);
        if (!bytes) return make_error(fmt::format("{}: quota: {}", where, bytes.error()));
        target.quota_bytes = *bytes;

        std::string folder(frame->get("folder").value_or(""));
        if (!store::valid_folder_name(folder)) return make_error(fmt::format("{}: invalid folder name", where));
        target.folder = std::move(folder);
    } else if (*kind == "pipe") {
        target.kind = Kind::pipe;
        auto command = required(*frame, "command", where);
        if (!command) return make_error(command.error());
        if (command->empty() || command->size() > kMaxCommand || has_control(*command))
            return make_error(fmt::format("{}: invalid command", where));
        target.command = std::move(command).value();
        std::string alias(frame->get("alias").value_or(""));
        if (alias.size() > kMaxAddress || has_control(alias)) return make_error(fmt::format("{}: invalid alias", where));
        target.alias = std::move(alias);
    } else {
        return make_error(fmt::format("{}: unknown kind '{}'", where, *kind));
    }
    return target;
}


}  // namespace

bool has_control(std::string_view text) {
    for (char c : text) {
        unsigned char byte = static_cast<unsigned char>(c);
        if (byte < 0x20 || byte == 0x7f) return true;
    }
    return false;
}

Result<uint64_t> parse_decimal(std::string_view text) {
    if (text.empty() || text.size() > 20) return make_error("not a decimal number");
    uint64_t value = 0;
    for (char c : text) {
        if (c < '0' || c > '9') return make_error("not a decimal number");
        uint64_t digit = static_cast<uint64_t>(c - '0');
        if (value > (UINT64_MAX - digit) / 10) return make_error("number too large");
        value = value * 10 + digit;
    }
    return value;
}

Result<ipc::Frame> decode_nested(std::string_view data, std::string_view what) {
    ipc::Frame frame;
    size_t consumed = 0;
    std::string error;
    if (ipc::decode(data, frame, consumed, error) != ipc::DecodeStatus::complete || consumed != data.size())
        return make_error(fmt::format("{}: malformed nested frame{}{}", what, error.empty() ? "" : ": ", error));
    return frame;
}

bool valid_dsn(std::string_view dsn, Outcome outcome) {
    // RFC 3463 §2: class "." subject "." detail, 1-3 digits each.
    char expected = outcome == Outcome::sent ? '2' : outcome == Outcome::deferred ? '4' : '5';
    if (dsn.size() < 5 || dsn[0] != expected || dsn[1] != '.') return false;
    std::string_view rest = dsn.substr(2);
    size_t dot = rest.find('.');
    if (dot == std::string_view::npos) return false;
    for (std::string_view part : {rest.substr(0, dot), rest.substr(dot + 1)}) {
        if (part.empty() || part.size() > 3) return false;
        for (char c : part)
            if (c < '0' || c > '9') return false;
    }
    return true;
}

std::string_view outcome_name(Outcome outcome) {
    switch (outcome) {
    case Outcome::sent: return "sent";
    case Outcome::deferred: return "deferred";
    case Outcome::bounced: return "bounced";
    }
    panic("outcome_name: unknown outcome");
}

ipc::Frame encode_request(const Request& request) {
    ipc::Frame frame;
    frame.add("op", "deliver");
    frame.add("queue_id", request.queue_id);
    frame.add("queue_file", request.queue_file);
    frame.add("sender", request.sender);
    for (const Target& target : request.targets) {
        ipc::Frame nested;
        nested.add("recipient", target.recipient);
        if (target.kind == Kind::mailbox) {
            nested.add("kind", "mailbox");
            nested.add("user", target.user);
            nested.add("mail_path", target.mail_path);
            nested.add("format", target.format);
            nested.add("quota", std::to_string(target.quota_bytes));
            nested.add("folder", target.folder);
        } else {
            nested.add("kind", "pipe");
            nested.add("command", target.command);
            nested.add("alias", target.alias);
        }
        frame.add("delivery", ipc::encode(nested));
    }
    return frame;
}

Result<Request> decode_request(const ipc::Frame& frame) {
    auto op = frame.get("op");
    if (!op) return make_error("request without op");
    if (*op != "deliver") return make_error(fmt::format("unknown op '{}'", *op));
    Request request;

    auto queue_id = required(frame, "queue_id", "request");
    if (!queue_id) return make_error(queue_id.error());
    if (!queue::valid_queue_id(*queue_id)) return make_error("request: invalid queue_id");
    request.queue_id = std::move(queue_id).value();

    auto queue_file = required(frame, "queue_file", "request");
    if (!queue_file) return make_error(queue_file.error());
    if (!valid_absolute_path(*queue_file))
        return make_error("request: queue_file must be an absolute path without . or ..");
    request.queue_file = std::move(queue_file).value();

    auto sender = required(frame, "sender", "request");
    if (!sender) return make_error(sender.error());
    if (sender->size() > kMaxAddress || has_control(*sender)) return make_error("request: invalid sender");
    request.sender = std::move(sender).value();

    std::vector<std::string_view> deliveries = frame.get_all("delivery");
    if (deliveries.empty()) return make_error("request: no delivery");
    if (deliveries.size() > kMaxTargets)
        return make_error(fmt::format("request: {} deliveries, at most {}", deliveries.size(), kMaxTargets));
    request.targets.reserve(deliveries.size());
    for (size_t i = 0; i < deliveries.size(); ++i) {
        auto target = decode_target(deliveries[i], i);
        if (!target) return make_error(target.error());
        request.targets.push_back(std::move(target).value());
    }
    return request;
}

ipc::Frame encode_reply(const std::vector<TargetResult>& results) {
    ipc::Frame frame = ipc::ok_reply();
    for (const TargetResult& result : results) {
        ipc::Frame nested;
        nested.add("outcome", std::string(outcome_name(result.outcome)));
        nested.add("dsn", result.dsn);
        nested.add("reason", result.reason);
        frame.add("result", ipc::encode(nested));
    }
    return frame;
}

Result<std::vector<TargetResult>> decode_reply(const ipc::Frame& frame, size_t expected) {
    if (Status status = ipc::reply_status(frame, "deliverd"); !status) return make_error(status.error());
    std::vector<std::string_view> encoded = frame.get_all("result");
    if (encoded.size() != expected)
        return make_error(fmt::format("malformed reply from deliverd: {} results for {} deliveries", encoded.size(),
                                      expected));
    std::vector<TargetResult> results;
    results.reserve(encoded.size());
    for (size_t i = 0; i < encoded.size(); ++i) {
        std::string where = fmt::format("deliverd result {}", i);
        auto nested = decode_nested(encoded[i], where);
        if (!nested) return make_error(nested.error());
        TargetResult result;
        auto outcome = nested->get("outcome");
        if (!outcome) return make_error(fmt::format("{}: missing outcome", where));
        if (*outcome == "sent")
            result.outcome = Outcome::sent;
        else if (*outcome == "deferred")
            result.outcome = Outcome::deferred;
        else if (*outcome == "bounced")
            result.outcome = Outcome::bounced;
        else
            return make_error(fmt::format("{}: unknown outcome '{}'", where, *outcome));
        result.dsn = std::string(nested->get("dsn").value_or(""));
        if (!valid_dsn(result.dsn, result.outcome))
            return make_error(fmt::format("{}: dsn '{}' does not fit outcome {}", where, result.dsn, *outcome));
        result.reason = std::string(nested->get("reason").value_or(""));
        results.push_back(std::move(result));
    }
    return results;
}

}  // namespace facteur::delivery
