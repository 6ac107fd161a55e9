// Validation of MAIL/RCPT ESMTP parameters into the envelope's options.
#include "smtpd/smtp_parameters.hpp"

#include <charconv>

#include <fmt/format.h>

#include "libmail/ascii.hpp"

namespace facteur::smtpd {
namespace {

Reply syntax(std::string text) { return Reply{501, "5.5.4", std::move(text)}; }

int hex_value(char c) {
    // RFC 3461 §4: hexchar uses upper-case digits only.
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

bool printable_ascii(std::string_view text) {
    for (char c : text) {
        auto byte = static_cast<unsigned char>(c);
        if (byte < 0x20 || byte >= 0x7f) return false;
    }
    return true;
}

bool is_atom_text(std::string_view text) {
    if (text.empty()) return false;
    for (char c : text) {
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
                  c == '.';
        if (!ok) return false;
    }
    return true;
}

}  // namespace

Result<std::string> decode_xtext(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (size_t i = 0; i < text.size(); ++i) {
        auto byte = static_cast<unsigned char>(text[i]);
        if (text[i] == '+') {
            if (i + 2 >= text.size()) return make_error("truncated +XX escape in xtext");
            int high = hex_value(text[i + 1]);
            int low = hex_value(text[i + 2]);
            if (high < 0 || low < 0) return make_error("bad +XX escape in xtext");
            out += static_cast<char>(high * 16 + low);
            i += 2;
        } else if (byte < 33 || byte > 126 || text[i] == '=') {
            return make_error("invalid character in xtext");
        } else {
            out += text[i];
        }
    }
    return out;
}

std::optional<Reply> parse_mail_parameters(const address::MailParameters& parameters, uint64_t message_size_limit,
                                           MailOptions& out) {
    out = MailOptions{};
    for (const auto& [keyword, value] : parameters) {
        if (keyword == "SIZE") {
            // RFC 1870 §3: size-value = 1*20DIGIT.
            if (value.empty() || value.size() > 20) return syntax("Bad SIZE parameter");
            uint64_t size = 0;
            for (char c : value)
                if (c < '0' || c > '9') return syntax("Bad SIZE parameter");
            auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), size);
            if (error == std::errc::result_out_of_range) size = UINT64_MAX;
            else if (error != std::errc() || end != value.data() + value.size()) return syntax("Bad SIZE parameter");
            // RFC 1870 §6.3: refuse at MAIL what could never be accepted.
            if (size > message_size_limit) return Reply{552, "5.3.4", "Message size exceeds fixed limit"};
            out.declared_size = size;
        } else if (keyword == "BODY") {
            if (ascii::iequals(value, "7BIT")) out.body = queue::BodyType::seven_bit;
            else if (ascii::iequals(value, "8BITMIME")) out.body = queue::BodyType::eight_bit_mime;
            else if (ascii::iequals(value, "BINARYMIME")) out.body = queue::BodyType::binary_mime;
            else return syntax("Bad BODY parameter (7BIT, 8BITMIME or BINARYMIME)");
        } else if (keyword == "SMTPUTF8") {
            // RFC 6531 §3.4: a parameter without a value.
            if (!value.empty()) return syntax("SMTPUTF8 takes no value");
            out.smtputf8 = true;
        } else if (keyword == "RET") {
            if (ascii::iequals(value, "FULL")) out.ret = queue::Ret::full;
            else if (ascii::iequals(value, "HDRS")) out.ret = queue::Ret::headers;
            else return syntax("Bad RET parameter (FULL or HDRS)");
        } else if (keyword == "ENVID") {
            if (value.empty() || value.size() > kMaxEnvidLength) return syntax("Bad ENVID parameter");
            auto decoded = decode_xtext(value);
            if (!decoded || decoded->empty() || !printable_ascii(*decoded)) return syntax("Bad ENVID parameter (xtext)");
            out.envid = std::move(decoded).value();
        } else if (keyword == "AUTH") {
            // RFC 4954 §5: the original submitter; informational between
            // trusted MTAs. Validated, not trusted.
            if (value.empty()) return syntax("Bad AUTH parameter");
            if (value != "<>" && !decode_xtext(value)) return syntax("Bad AUTH parameter (xtext)");
        } else {
            return Reply{555, "5.5.4", fmt::format("Unsupported option: {}", keyword)};
        }
    }
    return std::nullopt;
}

std::optional<Reply> parse_rcpt_parameters(const address::MailParameters& parameters, RcptOptions& out) {
    out = RcptOptions{};
    for (const auto& [keyword, value] : parameters) {
        if (keyword == "NOTIFY") {
            // RFC 3461 §4.1: "NEVER" alone, or a comma list of SUCCESS,
            // FAILURE and DELAY.
            if (value.empty()) return syntax("Bad NOTIFY parameter");
            unsigned notify = 0;
            std::string_view rest = value;
            while (true) {
                size_t comma = rest.find(',');
                std::string_view item = rest.substr(0, comma);
                unsigned bit = 0;
                if (ascii::iequals(item, "NEVER")) bit = queue::notify_never;
                else if (ascii::iequals(item, "SUCCESS")) bit = queue::notify_success;
                else if (ascii::iequals(item, "FAILURE")) bit = queue::notify_failure;
                else if (ascii::iequals(item, "DELAY")) bit = queue::notify_delay;
                else return syntax("Bad NOTIFY parameter (NEVER, or SUCCESS,FAILURE,DELAY)");
                if (notify & bit) return syntax("Bad NOTIFY parameter (repeated keyword)");
                notify |= bit;
                if (comma == std::string_view::npos) break;
                rest.remove_prefix(comma + 1);
            }
            if ((notify & queue::notify_never) && notify != queue::notify_never)
                return syntax("Bad NOTIFY parameter (NEVER must be alone)");
            out.notify = notify;
        } else if (keyword == "ORCPT") {
            // RFC 3461 §4.2: addr-type ";" xtext.
            if (value.empty() || value.size() > kMaxOrcptLength) return syntax("Bad ORCPT parameter");
            size_t semicolon = value.find(';');
            if (semicolon == std::string::npos) return syntax("Bad ORCPT parameter (addr-type;address)");
            std::string_view type = std::string_view(value).substr(0, semicolon);
            std::string_view encoded = std::string_view(value).substr(semicolon + 1);
            if (!is_atom_text(type) || encoded.empty()) return syntax("Bad ORCPT parameter (addr-type;address)");
            auto decoded = decode_xtext(encoded);
            if (!decoded || !printable_ascii(*decoded)) return syntax("Bad ORCPT parameter (xtext)");
            out.orcpt = fmt::format("{};{}", type, *decoded);
        } else {
            return Reply{555, "5.5.4", fmt::format("Unsupported option: {}", keyword)};
        }
    }
    return std::nullopt;
}

}  // namespace facteur::smtpd
