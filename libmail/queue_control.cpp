// qmgr's control protocol (libmail/queue_control.hpp): requests, replies and
// the nested message/recipient frames, decoded strictly on both sides.
#include "libmail/queue_control.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <initializer_list>
#include <set>

#include <fmt/format.h>

#include "libmail/ascii.hpp"
#include "libmail/queue.hpp"
#include "libmail/unique_fd.hpp"

namespace facteur::queue_control {
namespace {

struct OpName {
    Op op;
    std::string_view name;
};
constexpr std::array<OpName, 8> kOps{{
    {Op::wakeup, "wakeup"},
    {Op::list, "list"},
    {Op::show, "show"},
    {Op::flush, "flush"},
    {Op::hold, "hold"},
    {Op::release, "release"},
    {Op::remove, "delete"},
    {Op::requeue, "requeue"},
}};

constexpr std::array<std::string_view, 6> kFolders{"incoming", "active", "deferred", "hold", "maildrop", "corrupt"};
constexpr std::array<std::string_view, 5> kStates{"pending", "sent", "deferred", "bounced", "expanded"};

template <size_t N>
bool one_of(const std::array<std::string_view, N>& names, std::string_view value) {
    for (std::string_view name : names)
        if (name == value) return true;
    return false;
}

template <typename Number>
bool parse_number(std::string_view text, Number& out) {
    if (text.empty()) return false;
    auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), out);
    return error == std::errc() && end == text.data() + text.size();
}

// One nested frame: the whole value must be exactly one encoded frame.
Result<ipc::Frame> decode_nested(std::string_view bytes, std::string_view what) {
    ipc::Frame frame;
    size_t consumed = 0;
    std::string error;
    ipc::DecodeStatus status = ipc::decode(bytes, frame, consumed, error);
    if (status == ipc::DecodeStatus::need_more) return make_error(fmt::format("{} frame truncated", what));
    if (status == ipc::DecodeStatus::error) return make_error(fmt::format("{} frame: {}", what, error));
    if (consumed != bytes.size()) return make_error(fmt::format("{} frame followed by stray bytes", what));
    return frame;
}

// Walks a frame's attributes once, refusing unknown and repeated names
// (repeatable ones excepted) so a garbled reply is an error, not a guess.
class StrictFields {
public:
    StrictFields(std::string_view what, std::initializer_list<std::string_view> required)
        : what_(what), required_(required) {}

    Status accept(std::string_view name, bool repeatable = false) {
        if (!repeatable && !seen_.insert(std::string(name)).second)
            return make_error(fmt::format("{}: repeated attribute '{}'", what_, name));
        return {};
    }
    Status complete() const {
        for (std::string_view name : required_)
            if (!seen_.contains(std::string(name)))
                return make_error(fmt::format("{}: missing attribute '{}'", what_, name));
        return {};
    }

private:
    std::string_view what_;
    std::vector<std::string_view> required_;
    std::set<std::string> seen_;
};

std::string encode_recipient(const RecipientInfo& recipient) {
    ipc::Frame frame;
    frame.add("address", recipient.address);
    frame.add("state", recipient.state);
    frame.add("dsn", recipient.dsn);
    frame.add("reason", recipient.reason);
    return ipc::encode(frame);
}

Result<RecipientInfo> decode_recipient(std::string_view bytes) {
    auto frame = decode_nested(bytes, "recipient");
    if (!frame) return make_error(frame.error());
    RecipientInfo recipient;
    StrictFields fields("recipient", {"address", "state", "dsn", "reason"});
    for (const auto& [name, value] : frame->attributes) {
        if (Status s = fields.accept(name); !s) return make_error(s.error());
        if (name == "address") recipient.address = value;
        else if (name == "state") {
            if (!one_of(kStates, value)) return make_error(fmt::format("recipient: unknown state '{}'", value));
            recipient.state = value;
        } else if (name == "dsn") recipient.dsn = value;
        else if (name == "reason") recipient.reason = value;
        else return make_error(fmt::format("recipient: unknown attribute '{}'", name));
    }
    if (Status s = fields.complete(); !s) return make_error(s.error());
    return recipient;
}

// The reply's status first: an error reply carries qmgr's reason.
Status check_reply(const ipc::Frame& reply) { return ipc::reply_status(reply, "qmgr"); }

// Reply attributes other than status/error and the expected ones are refused.
bool is_status_attribute(std::string_view name) { return name == "status" || name == "error"; }

}  // namespace

std::string_view op_name(Op op) {
    for (const OpName& entry : kOps)
        if (entry.op == op) return entry.name;
    panic("queue_control::op_name: unknown op");
}

std::optional<Op> parse_op(std::string_view name) {
    for (const OpName& entry : kOps)
        if (entry.name == name) return entry.op;
    return std::nullopt;
}

bool is_mutating(Op op) {
    switch (op) {
    case Op::wakeup:
    case Op::list:
    case Op::show:
        return false;
    case Op::flush:
    case Op::hold:
    case Op::release:
    case Op::remove:
    case Op::requeue:
        return true;
    }
    panic("queue_control::is_mutating: unknown op");
}

ipc::Frame request(Op op, std::string_view id) {
    ipc::Frame frame;
    frame.add("op", std::string(op_name(op)));
    if (!id.empty()) frame.add("id", std::string(id));
    return frame;
}

ipc::Frame flush_request(std::string_view domain, bool subdomains) {
    ipc::Frame frame = request(Op::flush);
    frame.add("domain", std::string(domain));
    if (subdomains) frame.add("subdomains", "yes");
    return frame;
}

bool valid_flush_domain(std::string_view domain) {
    if (domain.empty() || domain.size() > 255 || domain.front() == '.' || domain.back() == '.') return false;
    char previous = '.';
    for (char c : domain) {
        bool label = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
        if (c == '.' ? previous == '.' : !label) return false;
        previous = c;
    }
    return true;
}

bool address_in_domain(std::string_view address, std::string_view domain, bool subdomains) {
    size_t at = address.rfind('@');
    if (at == std::string_view::npos || domain.empty()) return false;
    std::string_view own = address.substr(at + 1);
    if (ascii::iequals(own, domain)) return true;
    return subdomains && own.size() > domain.size() + 1 && own[own.size() - domain.size() - 1] == '.' &&
           ascii::iequals(own.substr(own.size() - domain.size()), domain);
}

bool not_running(const std::string& socket_path) {
    struct stat info{};
    if (lstat(socket_path.c_str(), &info) != 0) return errno == ENOENT || errno == ENOTDIR;
    sockaddr_un address{};
    if (socket_path.size() >= sizeof address.sun_path) return false;
    address.sun_family = AF_UNIX;
    std::memcpy(address.sun_path, socket_path.c_str(), socket_path.size() + 1);
    UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) return false;
    int rc;
    do {
        rc = connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address);
    } while (rc != 0 && errno == EINTR);
    // A socket file nobody listens on (qmgr died without removing it).
    return rc != 0 && errno == ECONNREFUSED;
}

Result<ipc::Frame> call(const std::string& socket_path, const ipc::Frame& request,
                        std::chrono::milliseconds timeout) {
    auto client = ipc::Client::connect(socket_path, timeout);
    if (!client) {
        if (not_running(socket_path)) return make_error(fmt::format("qmgr is not running ({})", client.error()));
        return make_error(fmt::format("cannot reach qmgr: {}", client.error()));
    }
    auto reply = client->call(request);
    if (!reply) return make_error(fmt::format("qmgr: {}", reply.error()));
    return reply;
}

Result<Listing> decode_list_reply(const ipc::Frame& reply) {
    if (Status s = check_reply(reply); !s) return make_error(s.error());
    Listing listing;
    StrictFields fields("list reply", {"truncated"});
    for (const auto& [name, value] : reply.attributes) {
        if (is_status_attribute(name)) continue;
        if (name == "message") {
            auto message = decode_message(value);
            if (!message) return make_error(message.error());
            listing.messages.push_back(std::move(message).value());
        } else if (name == "truncated") {
            if (Status s = fields.accept(name); !s) return make_error(s.error());
            if (!parse_number(value, listing.truncated)) return make_error("list reply: malformed truncated");
        } else {
            return make_error(fmt::format("list reply: unknown attribute '{}'", name));
        }
    }
    if (Status s = fields.complete(); !s) return make_error(s.error());
    return listing;
}

Result<std::pair<MessageInfo, std::string>> decode_show_reply(const ipc::Frame& reply) {
    if (Status s = check_reply(reply); !s) return make_error(s.error());
    std::optional<MessageInfo> message;
    std::string headers;
    StrictFields fields("show reply", {"message", "headers"});
    for (const auto& [name, value] : reply.attributes) {
        if (is_status_attribute(name)) continue;
        if (Status s = fields.accept(name); !s) return make_error(s.error());
        if (name == "message") {
            auto decoded = decode_message(value);
            if (!decoded) return make_error(decoded.error());
            message = std::move(decoded).value();
        } else if (name == "headers") {
            if (value.size() > kMaxHeaders) return make_error("show reply: headers longer than 64 KiB");
            headers = value;
        } else {
            return make_error(fmt::format("show reply: unknown attribute '{}'", name));
        }
    }
    if (Status s = fields.complete(); !s) return make_error(s.error());
    return std::pair<MessageInfo, std::string>(std::move(*message), std::move(headers));
}

Result<uint64_t> decode_count_reply(const ipc::Frame& reply) {
    if (Status s = check_reply(reply); !s) return make_error(s.error());
    std::optional<uint64_t> count;
    for (const auto& [name, value] : reply.attributes) {
        if (is_status_attribute(name)) continue;
        if (name != "count") return make_error(fmt::format("count reply: unknown attribute '{}'", name));
        if (count) return make_error("count reply: repeated attribute 'count'");
        uint64_t number = 0;
        if (!parse_number(value, number)) return make_error("count reply: malformed count");
        count = number;
    }
    if (!count) return make_error("count reply: missing attribute 'count'");
    return *count;
}

Result<Request> decode_request(const ipc::Frame& frame) {
    Request request;
    std::optional<std::string_view> op_text;
    std::optional<std::string_view> id, domain, subdomains;
    for (const auto& [name, value] : frame.attributes) {
        if (name == "op") {
            if (op_text) return make_error("repeated attribute 'op'");
            op_text = value;
        } else if (name == "id") {
            if (id) return make_error("repeated attribute 'id'");
            id = value;
        } else if (name == "domain") {
            if (domain) return make_error("repeated attribute 'domain'");
            domain = value;
        } else if (name == "subdomains") {
            if (subdomains) return make_error("repeated attribute 'subdomains'");
            subdomains = value;
        } else {
            return make_error(fmt::format("unknown attribute '{}'", name));
        }
    }
    if (!op_text) return make_error("missing attribute 'op'");
    auto op = parse_op(*op_text);
    if (!op) return make_error(fmt::format("unknown op '{}'", *op_text));
    request.op = *op;
    if ((domain || subdomains) && request.op != Op::flush)
        return make_error(fmt::format("{} takes no domain", op_name(request.op)));
    if (subdomains && !domain) return make_error("flush: subdomains without a domain");
    if (subdomains && *subdomains != "yes" && *subdomains != "no")
        return make_error("flush: subdomains must be yes or no");
    if (domain) {
        if (!valid_flush_domain(*domain)) return make_error("flush: malformed domain");
        request.domain = ascii::lowercase(*domain);
        request.subdomains = subdomains && *subdomains == "yes";
    }
    switch (request.op) {
    case Op::wakeup:
    case Op::list:
    case Op::flush:
        if (id) return make_error(fmt::format("{} takes no id", op_name(request.op)));
        return request;
    case Op::show:
        if (!id) return make_error("show needs a queue id");
        if (!queue::valid_queue_id(*id)) return make_error("show: malformed queue id");
        break;
    case Op::hold:
    case Op::release:
    case Op::remove:
    case Op::requeue:
        if (!id) return make_error(fmt::format("{} needs a queue id or 'all'", op_name(request.op)));
        if (*id != "all" && !queue::valid_queue_id(*id))
            return make_error(fmt::format("{}: malformed queue id", op_name(request.op)));
        break;
    }
    request.id = std::string(*id);
    return request;
}

std::string encode_message(const MessageInfo& message) {
    ipc::Frame frame;
    frame.add("id", message.id);
    frame.add("folder", message.folder);
    frame.add("size", std::to_string(message.size));
    frame.add("arrival", std::to_string(message.arrival));
    frame.add("sender", message.sender);
    for (const RecipientInfo& recipient : message.recipients) frame.add("recipient", encode_recipient(recipient));
    frame.add("next_attempt", std::to_string(message.next_attempt));
    return ipc::encode(frame);
}

Result<MessageInfo> decode_message(std::string_view bytes) {
    auto frame = decode_nested(bytes, "message");
    if (!frame) return make_error(frame.error());
    MessageInfo message;
    StrictFields fields("message", {"id", "folder", "size", "arrival", "sender", "next_attempt"});
    for (const auto& [name, value] : frame->attributes) {
        bool recipient = name == "recipient";
        if (Status s = fields.accept(name, recipient); !s) return make_error(s.error());
        if (recipient) {
            auto decoded = decode_recipient(value);
            if (!decoded) return make_error(decoded.error());
            message.recipients.push_back(std::move(decoded).value());
        } else if (name == "id") {
            if (!queue::valid_queue_id(value)) return make_error("message: malformed queue id");
            message.id = value;
        } else if (name == "folder") {
            if (!one_of(kFolders, value)) return make_error(fmt::format("message: unknown folder '{}'", value));
            message.folder = value;
        } else if (name == "size") {
            if (!parse_number(value, message.size)) return make_error("message: malformed size");
        } else if (name == "arrival") {
            if (!parse_number(value, message.arrival) || message.arrival < 0)
                return make_error("message: malformed arrival");
        } else if (name == "sender") {
            message.sender = value;
        } else if (name == "next_attempt") {
            if (!parse_number(value, message.next_attempt) || message.next_attempt < 0)
                return make_error("message: malformed next_attempt");
        } else {
            return make_error(fmt::format("message: unknown attribute '{}'", name));
        }
    }
    if (Status s = fields.complete(); !s) return make_error(s.error());
    return message;
}

ipc::Frame list_reply(const Listing& listing) {
    ipc::Frame frame = ipc::ok_reply();
    for (const MessageInfo& message : listing.messages) frame.add("message", encode_message(message));
    frame.add("truncated", std::to_string(listing.truncated));
    return frame;
}

ipc::Frame show_reply(const MessageInfo& message, std::string_view headers) {
    ipc::Frame frame = ipc::ok_reply();
    frame.add("message", encode_message(message));
    // The header section is capped so a reply always fits in a frame.
    frame.add("headers", std::string(headers.substr(0, kMaxHeaders)));
    return frame;
}

ipc::Frame count_reply(uint64_t count) {
    ipc::Frame frame = ipc::ok_reply();
    frame.add("count", std::to_string(count));
    return frame;
}

}  // namespace facteur::queue_control
