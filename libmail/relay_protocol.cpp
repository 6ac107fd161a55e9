// qmgr -> relayd request and its reply, and the next-hop syntax: encoding,
// and validation of every field on decode.
#include "libmail/relay_protocol.hpp"

#include <arpa/inet.h>

#include <fmt/format.h>

namespace facteur::relay {
namespace {

constexpr size_t kMaxPath = 4096;
constexpr size_t kMaxRecipients = 100000;

bool host_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
           c == '_';
}

bool numeric_address(const std::string& text) {
    unsigned char buffer[16];
    return inet_pton(AF_INET, text.c_str(), buffer) == 1 || inet_pton(AF_INET6, text.c_str(), buffer) == 1;
}

}  // namespace

std::string Nexthop::text() const {
    std::string name = literal && host.find(':') != std::string::npos ? "ipv6:" + host : host;
    std::string out = mx_lookup ? name : "[" + name + "]";
    if (port != 25) out += ":" + std::to_string(port);
    return out;
}

Result<Nexthop> parse_nexthop(std::string_view text) {
    Nexthop hop;
    std::string_view rest = text;
    std::string_view host;
    if (!rest.empty() && rest.front() == '[') {
        size_t close = rest.find(']');
        if (close == std::string_view::npos) return make_error(fmt::format("next hop '{}': missing ']'", text));
        host = rest.substr(1, close - 1);
        rest = rest.substr(close + 1);
        hop.mx_lookup = false;
    } else {
        size_t colon = rest.rfind(':');
        host = colon == std::string_view::npos ? rest : rest.substr(0, colon);
        rest = colon == std::string_view::npos ? std::string_view() : rest.substr(colon);
    }
    if (!rest.empty()) {
        if (rest.front() != ':' || rest.size() < 2)
            return make_error(fmt::format("next hop '{}': expected ':port' after the host", text));
        auto port = delivery::parse_decimal(rest.substr(1));
        if (!port || *port == 0 || *port > 65535) return make_error(fmt::format("next hop '{}': bad port", text));
        hop.port = static_cast<uint16_t>(*port);
    }
    if (host.size() > 5 && (host.substr(0, 5) == "ipv6:" || host.substr(0, 5) == "IPv6:")) host = host.substr(5);
    if (host.empty()) return make_error(fmt::format("next hop '{}': empty host", text));
    if (host.size() > 255) return make_error(fmt::format("next hop '{}': host name too long", text));
    hop.host = std::string(host);
    if (numeric_address(hop.host)) {
        if (hop.mx_lookup)
            return make_error(fmt::format("next hop '{}': write an address in brackets ([{}])", text, hop.host));
        hop.literal = true;
        return hop;
    }
    for (char c : host)
        if (!host_char(c)) return make_error(fmt::format("next hop '{}': bad character in the host name", text));
    if (host.front() == '.' || host.front() == '-')
        return make_error(fmt::format("next hop '{}': bad host name", text));
    return hop;
}

ipc::Frame encode_request(const Request& request) {
    ipc::Frame frame;
    frame.add("op", "relay");
    frame.add("queue_id", request.queue_id);
    frame.add("queue_file", request.queue_file);
    frame.add("nexthop", request.nexthop.text());
    for (size_t index : request.recipients) frame.add("recipient", std::to_string(index));
    return frame;
}

Result<Request> decode_request(const ipc::Frame& frame) {
    if (frame.get("op").value_or("") != "relay") return make_error("relay request: op is not relay");
    Request request;
    auto id = frame.get("queue_id");
    if (!id || id->empty() || id->size() > 64 || delivery::has_control(*id) || id->find('/') != std::string_view::npos)
        return make_error("relay request: missing or invalid queue_id");
    request.queue_id = std::string(*id);
    auto file = frame.get("queue_file");
    if (!file || file->empty() || file->front() != '/' || file->size() > kMaxPath || delivery::has_control(*file) ||
        file->find("/../") != std::string_view::npos)
        return make_error("relay request: missing or invalid queue_file");
    request.queue_file = std::string(*file);
    auto nexthop = frame.get("nexthop");
    if (!nexthop) return make_error("relay request: missing nexthop");
    auto hop = parse_nexthop(*nexthop);
    if (!hop) return make_error("relay request: " + hop.error());
    request.nexthop = std::move(hop).value();
    std::vector<std::string_view> recipients = frame.get_all("recipient");
    if (recipients.empty()) return make_error("relay request: no recipient");
    if (recipients.size() > kMaxRecipients) return make_error("relay request: too many recipients");
    for (std::string_view text : recipients) {
        auto index = delivery::parse_decimal(text);
        if (!index || *index >= kMaxRecipients) return make_error("relay request: bad recipient index");
        request.recipients.push_back(static_cast<size_t>(*index));
    }
    return request;
}

ipc::Frame encode_reply(const std::vector<RecipientResult>& results) {
    ipc::Frame frame = ipc::ok_reply();
    for (const RecipientResult& result : results) {
        ipc::Frame nested;
        nested.add("outcome", std::string(delivery::outcome_name(result.outcome)));
        nested.add("dsn", result.dsn);
        nested.add("reason", result.reason);
        nested.add("relay", result.relay);
        nested.add("remote_dsn", result.remote_dsn ? "yes" : "no");
        frame.add("result", ipc::encode(nested));
    }
    return frame;
}

Result<std::vector<RecipientResult>> decode_reply(const ipc::Frame& frame, size_t expected) {
    if (Status status = ipc::reply_status(frame, "relayd"); !status) return make_error(status.error());
    std::vector<std::string_view> encoded = frame.get_all("result");
    if (encoded.size() != expected)
        return make_error(
            fmt::format("malformed reply from relayd: {} results for {} recipients", encoded.size(), expected));
    std::vector<RecipientResult> results;
    results.reserve(encoded.size());
    for (size_t i = 0; i < encoded.size(); ++i) {
        std::string where = fmt::format("relayd result {}", i);
        auto nested = delivery::decode_nested(encoded[i], where);
        if (!nested) return make_error(nested.error());
        RecipientResult result;
        std::string_view outcome = nested->get("outcome").value_or("");
        if (outcome == "sent")
            result.outcome = delivery::Outcome::sent;
        else if (outcome == "deferred")
            result.outcome = delivery::Outcome::deferred;
        else if (outcome == "bounced")
            result.outcome = delivery::Outcome::bounced;
        else
            return make_error(fmt::format("{}: unknown outcome '{}'", where, outcome));
        result.dsn = std::string(nested->get("dsn").value_or(""));
        if (!delivery::valid_dsn(result.dsn, result.outcome))
            return make_error(fmt::format("{}: dsn '{}' does not fit outcome {}", where, result.dsn, outcome));
        result.reason = std::string(nested->get("reason").value_or(""));
        result.relay = std::string(nested->get("relay").value_or("none"));
        result.remote_dsn = nested->get("remote_dsn").value_or("no") == "yes";
        results.push_back(std::move(result));
    }
    return results;
}

}  // namespace facteur::relay
