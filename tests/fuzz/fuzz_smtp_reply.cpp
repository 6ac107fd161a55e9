// libFuzzer target for what a remote SMTP server sends relayd: reply lines
// assembled by ReplyParser (RFC 5321 §4.2, RFC 3463 codes) and the EHLO
// capabilities read from every complete reply (RFC 5321 §4.1.1.1).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "relayd/ehlo.hpp"
#include "relayd/smtp_reply.hpp"

using namespace facteur::relayd;

namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// 1 to 3 digits.
bool short_number(std::string_view text) {
    if (text.empty() || text.size() > 3) return false;
    for (char c : text)
        if (!is_digit(c)) return false;
    return true;
}

// RFC 3463 §2: class "." subject "." detail, with the class given.
bool well_formed_dsn(std::string_view dsn, char klass) {
    if (dsn.size() < 5 || dsn[0] != klass || dsn[1] != '.') return false;
    size_t second = dsn.find('.', 2);
    if (second == std::string_view::npos) return false;
    return short_number(dsn.substr(2, second - 2)) && short_number(dsn.substr(second + 1));
}

void check_enhanced_helpers(std::string_view text) {
    std::string_view code = leading_enhanced_code(text);
    if (code.empty()) return;
    // It is a prefix of the text, of class 2, 4 or 5, and ends at a space or the end.
    if (code.data() != text.data() || code.size() > text.size()) std::abort();
    if (!well_formed_dsn(code, code[0]) || (code[0] != '2' && code[0] != '4' && code[0] != '5')) std::abort();
    if (code.size() < text.size() && text[code.size()] != ' ') std::abort();
    std::string changed = with_class(code, '4');
    if (changed.size() != code.size() || changed[0] != '4' || changed.substr(1) != code.substr(1)) std::abort();
}

void check_capabilities(const Reply& reply) {
    Capabilities capabilities = parse_ehlo(reply);
    if (!capabilities.esmtp) std::abort();
    // At most 19 digits are taken (fits in 64 bits), and only with SIZE.
    if (!capabilities.size && capabilities.size_limit != 0) std::abort();
    if (capabilities.size_limit > 9999999999999999999ull) std::abort();
    for (size_t i = 0; i < capabilities.auth.size(); ++i) {
        const std::string& mechanism = capabilities.auth[i];
        if (mechanism.empty()) std::abort();
        for (char c : mechanism)
            if (c == ' ' || c == '\t' || (c >= 'a' && c <= 'z')) std::abort();
        for (size_t j = 0; j < i; ++j)
            if (capabilities.auth[j] == mechanism) std::abort();
        if (!capabilities.has_auth(mechanism)) std::abort();
    }
    // The mechanisms come from the reply's text, so they cannot outnumber its words.
    if (capabilities.auth.size() > reply.joined().size()) std::abort();
}

void check_reply(const Reply& reply) {
    if (reply.code < 200 || reply.code > 559) std::abort();
    if (reply.lines.empty() || reply.lines.size() > kMaxReplyLines) std::abort();
    const std::string digits = std::to_string(reply.code);
    size_t total = 0;
    for (size_t i = 0; i < reply.lines.size(); ++i) {
        const std::string& line = reply.lines[i];
        if (line.size() < 3 || line.compare(0, 3, digits) != 0) std::abort();
        if (line.size() > kMaxReplyLine) std::abort();
        // Only the last line ends the reply: "250 " or a bare "250".
        bool last = line.size() == 3 || line[3] == ' ';
        if (last != (i + 1 == reply.lines.size())) std::abort();
        if (line.size() > 3 && line[3] != ' ' && line[3] != '-') std::abort();
        if (!line.empty() && (line.back() == '\n')) std::abort();
        total += line.size();
    }
    if (reply.texts().size() != reply.lines.size()) std::abort();
    const char klass = static_cast<char>('0' + reply.kind());
    if (!reply.enhanced.empty() && !well_formed_dsn(reply.enhanced, klass)) std::abort();
    if (!well_formed_dsn(reply.dsn(), klass)) std::abort();
    // Bounded: every line and one separator each, nothing more.
    std::string joined = reply.joined();
    if (joined.size() != total + reply.lines.size() - 1) std::abort();
    if (joined.size() > kMaxReplyLines * (kMaxReplyLine + 1)) std::abort();
    check_capabilities(reply);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    ReplyParser parser;
    size_t start = 0;
    while (start < input.size()) {
        size_t newline = input.find('\n', start);
        size_t end = newline == std::string_view::npos ? input.size() : newline + 1;
        std::string_view line = input.substr(start, end - start);
        start = end;
        check_enhanced_helpers(line.size() > 4 ? line.substr(4) : std::string_view());
        // The client's line reader refuses longer lines before the parser
        // sees them (the connection is dropped): start over as on a new one.
        if (line.size() > kMaxReplyLine) {
            parser = ReplyParser();
            continue;
        }
        ReplyParser::State state = parser.add(line);
        if (state == ReplyParser::State::error) {
            if (parser.error().empty()) std::abort();
            for (char c : parser.error())
                if (static_cast<unsigned char>(c) < 0x20) std::abort();  // printable for the log
            continue;
        }
        if (state == ReplyParser::State::done) {
            check_reply(parser.take());
            // take() leaves the parser empty for the next reply.
            if (!parser.take().lines.empty()) std::abort();
        }
    }
    return 0;
}
