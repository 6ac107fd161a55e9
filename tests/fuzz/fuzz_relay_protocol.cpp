// libFuzzer target for the qmgr <-> relayd protocol (next-hop syntax,
// request and reply frames) and relayd's two tables (TLS policy, relay
// credentials): arbitrary bytes never crash them, and what they accept
// survives a round trip.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "libmail/ipc.hpp"
#include "libmail/relay_protocol.hpp"
#include "relayd/settings.hpp"

using namespace facteur;

namespace {

void check_nexthop(std::string_view text) {
    auto hop = relay::parse_nexthop(text);
    if (!hop) {
        if (hop.error().empty()) std::abort();
        return;
    }
    if (hop->host.empty() || hop->host.size() > 255 || hop->port == 0) std::abort();
    if (hop->literal && hop->mx_lookup) std::abort();  // an address is never an MX lookup
    // text() is the canonical form: it parses back to the same hop.
    std::string canonical = hop->text();
    auto again = relay::parse_nexthop(canonical);
    if (!again) std::abort();
    if (again->text() != canonical || again->host != hop->host || again->port != hop->port ||
        again->mx_lookup != hop->mx_lookup || again->literal != hop->literal)
        std::abort();
}

void check_request(const ipc::Frame& frame) {
    auto request = relay::decode_request(frame);
    if (!request) {
        if (request.error().empty()) std::abort();
        return;
    }
    if (request->recipients.empty() || request->queue_id.empty() || request->queue_file.empty() ||
        request->queue_file.front() != '/')
        std::abort();
    auto again = relay::decode_request(relay::encode_request(*request));
    if (!again) std::abort();
    if (again->queue_id != request->queue_id || again->queue_file != request->queue_file ||
        again->nexthop.text() != request->nexthop.text() || again->recipients != request->recipients)
        std::abort();
}

void check_reply(const ipc::Frame& frame) {
    size_t results = frame.get_all("result").size();
    // Asking for another count than what is there must fail.
    if (relay::decode_reply(frame, results + 1)) std::abort();
    auto reply = relay::decode_reply(frame, results);
    if (!reply) {
        if (reply.error().empty()) std::abort();
        return;
    }
    if (reply->size() != results) std::abort();
    auto again = relay::decode_reply(relay::encode_reply(*reply), results);
    if (!again || again->size() != results) std::abort();
    for (size_t i = 0; i < results; ++i) {
        const relay::RecipientResult &a = (*reply)[i], &b = (*again)[i];
        if (a.outcome != b.outcome || a.dsn != b.dsn || a.reason != b.reason || a.relay != b.relay ||
            a.remote_dsn != b.remote_dsn)
            std::abort();
    }
}

// "name=value" lines as a frame, so the decoders see meaningful frames
// without the fuzzer having to find ipc's binary framing; a "result" value
// is itself "name:value,name:value", encoded as the nested frame relayd sends.
ipc::Frame frame_from_lines(std::string_view text) {
    ipc::Frame frame;
    for (std::string_view rest = text; !rest.empty();) {
        size_t end = rest.find('\n');
        std::string_view line = rest.substr(0, end);
        rest.remove_prefix(end == std::string_view::npos ? rest.size() : end + 1);
        size_t equals = line.find('=');
        if (equals == std::string_view::npos || equals == 0 || equals > ipc::kMaxNameLength) continue;
        std::string name(line.substr(0, equals));
        std::string_view value = line.substr(equals + 1);
        if (name != "result") {
            frame.add(std::move(name), std::string(value));
            continue;
        }
        ipc::Frame nested;
        for (std::string_view fields = value; !fields.empty();) {
            size_t comma = fields.find(',');
            std::string_view field = fields.substr(0, comma);
            fields.remove_prefix(comma == std::string_view::npos ? fields.size() : comma + 1);
            size_t colon = field.find(':');
            if (colon == std::string_view::npos || colon == 0 || colon > ipc::kMaxNameLength) continue;
            nested.add(std::string(field.substr(0, colon)), std::string(field.substr(colon + 1)));
        }
        frame.add("result", ipc::encode(nested));
    }
    return frame;
}

void check_tables(std::string_view text) {
    auto policy = relayd::PolicyTable::parse(text, "policy");
    if (policy) {
        (void)policy->find(text.substr(0, 80));
        (void)policy->find("mx.example.org");
        for (std::string_view rest = text; !rest.empty();) {
            size_t end = rest.find_first_of(" \t\n");
            std::string_view word = rest.substr(0, end);
            rest.remove_prefix(end == std::string_view::npos ? rest.size() : end + 1);
            if (!word.empty() && word.size() < 300) (void)policy->find(word);
        }
    } else if (policy.error().empty()) {
        std::abort();
    }
    auto credentials = relayd::CredentialTable::parse(text, "credentials");
    if (credentials) {
        for (std::string_view rest = text; !rest.empty();) {
            size_t end = rest.find_first_of(" \t\n");
            std::string_view word = rest.substr(0, end);
            rest.remove_prefix(end == std::string_view::npos ? rest.size() : end + 1);
            if (word.empty() || word.size() >= 300) continue;
            auto found = credentials->find(word, word);
            if (found && found->user.empty()) std::abort();  // "user:password" needs a user
        }
    } else if (credentials.error().empty()) {
        std::abort();
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);

    check_nexthop(input);
    check_nexthop(input.substr(0, input.find('\n')));

    ipc::Frame frame;
    size_t consumed = 0;
    std::string error;
    if (ipc::decode(input, frame, consumed, error) == ipc::DecodeStatus::complete) {
        check_request(frame);
        check_reply(frame);
    }
    ipc::Frame lines = frame_from_lines(input);
    check_request(lines);
    check_reply(lines);

    check_tables(input);
    return 0;
}
