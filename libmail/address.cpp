// RFC 5321 envelope addresses: MAIL FROM / RCPT TO paths, their ESMTP
// parameters, and domain syntax (see address.hpp).
#include "libmail/address.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <fmt/format.h>

#include <array>
#include <cstring>

#include "libmail/address_syntax.hpp"

namespace facteur::address {

using namespace syntax;

namespace {

// Checks an 8-bit byte at s[i] for the SMTPUTF8 rules; returns the sequence
// length (>0) or an error naming `where`.
Result<size_t> eight_bit(std::string_view s, size_t i, bool allow_utf8, std::string_view where) {
    if (!allow_utf8) return make_error(fmt::format("8-bit character in {} requires SMTPUTF8 (RFC 6531)", where));
    const size_t length = utf8_sequence_length(s, i);
    if (length == 0) return make_error(fmt::format("invalid UTF-8 in {}", where));
    return length;
}

// RFC 5321 §4.1.3 Snum 3("." Snum), Snum = 1*3DIGIT with a value up to 255.
bool is_ipv4_literal(std::string_view text) {
    int parts = 0;
    size_t i = 0;
    while (true) {
        size_t digits = 0;
        unsigned value = 0;
        while (i < text.size() && is_digit(static_cast<unsigned char>(text[i])) && digits < 4) {
            value = value * 10 + static_cast<unsigned>(text[i] - '0');
            ++digits;
            ++i;
        }
        if (digits == 0 || digits > 3 || value > 255) return false;
        ++parts;
        if (i == text.size()) return parts == 4;
        if (text[i] != '.' || parts == 4) return false;
        ++i;
    }
}

bool is_ipv6_address(std::string_view text) {
    // The longest IPv6 text form (with an embedded IPv4) is 45 characters.
    std::array<char, INET6_ADDRSTRLEN> buffer{};
    if (text.empty() || text.size() >= buffer.size()) return false;
    std::memcpy(buffer.data(), text.data(), text.size());
    in6_addr address{};
    return inet_pton(AF_INET6, buffer.data(), &address) == 1;
}

// RFC 5321 §4.1.3 address-literal, given the text between the brackets.
Status check_address_literal(std::string_view inside) {
    constexpr std::string_view ipv6_tag = "IPv6:";
    if (inside.empty()) return make_error("empty address literal '[]'");
    if (inside.size() >= ipv6_tag.size() && iequals(inside.substr(0, ipv6_tag.size()), ipv6_tag)) {
        if (!is_ipv6_address(inside.substr(ipv6_tag.size()))) return make_error("invalid IPv6 address literal");
        return {};
    }
    if (inside.find(':') != std::string_view::npos) {
        // General-address-literal: no tag other than IPv6 is registered with IANA.
        return make_error("unsupported address literal (only IPv4 and IPv6: are defined)");
    }
    if (!is_ipv4_literal(inside)) return make_error("invalid IPv4 address literal");
    return {};
}

// Where the first control character is, or npos.
size_t find_control(std::string_view text) {
    for (size_t i = 0; i < text.size(); ++i) {
        if (is_control(static_cast<unsigned char>(text[i]))) return i;
    }
    return std::string_view::npos;
}

// RFC 5321 §4.1.2 Local-part (Dot-string / Quoted-string) at the start of
// `text`; stops before the '@'. Fills path.local_part and path.quoted and
// returns the octets consumed.
Result<size_t> parse_smtp_local_part(std::string_view text, bool allow_utf8, Path& path) {
    size_t i = 0;
    if (!text.empty() && text.front() == '"') {
        path.quoted = true;
        i = 1;
        while (true) {
            if (i >= text.size()) return make_error("unterminated quoted string in local part");
            const auto c = static_cast<unsigned char>(text[i]);
            if (c == '"') {
                ++i;
                break;
            }
            if (c == '\\') {
                // quoted-pairSMTP = %d92 %d32-126: RFC 6531 does not extend it to UTF-8.
                if (i + 1 >= text.size()) return make_error("bad escape: '\\' at the end of the local part");
                const auto next = static_cast<unsigned char>(text[i + 1]);
                if (next < 32 || next > 126) {
                    return make_error("bad escape: '\\' must be followed by a printable US-ASCII character");
                }
                path.local_part += static_cast<char>(next);
                i += 2;
            } else if (c >= 0x80) {
                auto length = eight_bit(text, i, allow_utf8, "local part");
                if (!length) return make_error(length.error());
                path.local_part.append(text.substr(i, *length));
                i += *length;
            } else if (c >= 32 && c <= 126) {  // qtextSMTP: printable, '"' and '\' handled above
                path.local_part += static_cast<char>(c);
                ++i;
            } else {
                return make_error(fmt::format("invalid character {} in quoted local part", describe_byte(c)));
            }
        }
        if (i < text.size() && text[i] != '@') {
            return make_error(fmt::format("unexpected {} after quoted local part", describe_byte(text[i])));
        }
    } else {
        bool atom_empty = true;
        while (i < text.size() && text[i] != '@') {
            const auto c = static_cast<unsigned char>(text[i]);
            if (c == '.') {
                if (atom_empty) return make_error("empty atom in local part (misplaced '.')");
                atom_empty = true;
                ++i;
            } else if (c >= 0x80) {
                auto length = eight_bit(text, i, allow_utf8, "local part");
                if (!length) return make_error(length.error());
                atom_empty = false;
                i += *length;
            } else if (is_atext(c)) {
                atom_empty = false;
                ++i;
            } else if (c == '"') {
                return make_error("unbalanced quote in local part");
            } else {
                return make_error(fmt::format("invalid character {} in local part", describe_byte(c)));
            }
        }
        if (i == 0) return make_error("empty local part");
        if (atom_empty) return make_error("empty atom in local part (misplaced '.')");
        path.local_part.assign(text.substr(0, i));
    }
    if (path.local_part.empty()) return make_error("empty local part");
    if (i > max_local_part_length) {
        return make_error(fmt::format("local part longer than {} octets (RFC 5321 §4.5.3.1.1)", max_local_part_length));
    }
    return i;
}

// Domain / address-literal after the '@' of an SMTP mailbox.
Status parse_smtp_domain(std::string_view text, bool allow_utf8, Path& path) {
    if (text.empty()) return make_error("missing domain after '@'");
    if (text.size() > max_domain_length) {
        return make_error(fmt::format("domain longer than {} octets (RFC 5321 §4.5.3.1.2)", max_domain_length));
    }
    if (text.front() == '[') {
        const size_t close = text.find(']');
        if (close == std::string_view::npos) return make_error("unterminated address literal (missing ']')");
        if (close + 1 != text.size()) return make_error("unexpected text after address literal");
        auto status = check_address_literal(text.substr(1, close - 1));
        if (!status) return status;
        path.domain_is_literal = true;
        path.domain.assign(text);
        // The tag is case-insensitive (RFC 5321 §4.1.3 ABNF strings); keep one spelling.
        if (iequals(text.substr(1, 5), "IPv6:")) path.domain.replace(1, 5, "IPv6:");
        return {};
    }
    if (text.find('@') != std::string_view::npos) return make_error("more than one '@' in address");
    auto status = check_domain(text, allow_utf8);
    if (!status) return status;
    path.domain.assign(text);
    return {};
}

// RFC 5321 §4.1.2 A-d-l ":" — a source route. Returns the octets consumed,
// including the ':'. The route itself is dropped (§3.3 and appendix C: a
// receiver SHOULD ignore it and deliver to the final mailbox).
Result<size_t> skip_source_route(std::string_view text, bool allow_utf8) {
    size_t i = 0;
    while (true) {
        if (i >= text.size() || text[i] != '@') return make_error("source route: each hop must be '@domain'");
        ++i;
        const size_t end = text.find_first_of(",:", i);
        if (end == std::string_view::npos) return make_error("source route must end with ':' before the mailbox");
        auto status = check_domain(text.substr(i, end - i), allow_utf8);
        if (!status) return make_error("source route: " + status.error());
        i = end + 1;
        if (text[end] == ':') return i;
    }
}

}  // namespace

std::string Path::to_string() const {
    if (is_null) return {};
    if (domain.empty()) return quote_local_part(local_part);
    return quote_local_part(local_part) + "@" + domain;
}

std::string Path::normalized() const {
    if (is_null) return {};
    if (domain.empty()) return quote_local_part(local_part);
    return quote_local_part(local_part) + "@" + lowercase_domain(domain);
}

Result<Path> parse_path(std::string_view text, PathOptions options) {
    if (text.size() > max_path_length) {
        return make_error(fmt::format("path longer than {} octets (RFC 5321 §4.5.3.1.3)", max_path_length));
    }
    if (const size_t bad = find_control(text); bad != std::string_view::npos) {
        return make_error(fmt::format("path contains a control character ({})", describe_byte(text[bad])));
    }
    if (text.empty() || text.front() != '<') return make_error("path must be enclosed in angle brackets (missing '<')");
    if (text.size() < 2 || text.back() != '>') return make_error("path must be enclosed in angle brackets (missing '>')");
    std::string_view inner = text.substr(1, text.size() - 2);

    Path path;
    if (inner.empty()) {
        if (!options.allow_null) return make_error("null path '<>' not allowed here");
        path.is_null = true;
        return path;
    }
    if (options.allow_postmaster && iequals(inner, "Postmaster")) {
        // RFC 5321 §4.1.1.3: every server accepts "RCPT TO:<Postmaster>".
        path.local_part.assign(inner);
        return path;
    }
    if (inner.front() == '@') {
        if (inner.find(':') == std::string_view::npos) return make_error("empty local part");
        auto consumed = skip_source_route(inner, options.allow_utf8);
        if (!consumed) return make_error(consumed.error());
        inner.remove_prefix(*consumed);
        path.had_source_route = true;
    }
    auto consumed = parse_smtp_local_part(inner, options.allow_utf8, path);
    if (!consumed) return make_error(consumed.error());
    inner.remove_prefix(*consumed);
    if (inner.empty()) return make_error("missing '@domain' after local part");
    inner.remove_prefix(1);  // '@'
    auto status = parse_smtp_domain(inner, options.allow_utf8, path);
    if (!status) return make_error(status.error());
    return path;
}

Result<MailParameters> parse_esmtp_parameters(std::string_view text) {
    MailParameters parameters;
    size_t i = 0;
    while (true) {
        while (i < text.size() && text[i] == ' ') ++i;
        if (i >= text.size()) return parameters;
        if (parameters.size() == max_esmtp_parameters) {
            return make_error(fmt::format("too many ESMTP parameters (more than {})", max_esmtp_parameters));
        }
        // esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
        std::string keyword;
        while (i < text.size() && text[i] != ' ' && text[i] != '=') {
            const auto c = static_cast<unsigned char>(text[i]);
            if (!is_let_dig(c) && (c != '-' || keyword.empty())) {
                return make_error(fmt::format("invalid character {} in ESMTP parameter keyword", describe_byte(c)));
            }
            keyword += to_upper(static_cast<char>(c));
            ++i;
        }
        if (keyword.empty()) return make_error("ESMTP parameter without a keyword");
        std::string value;
        if (i < text.size() && text[i] == '=') {
            ++i;
            // esmtp-value = 1*(%d33-60 / %d62-126): printable, no '=' and no SP.
            while (i < text.size() && text[i] != ' ') {
                const auto c = static_cast<unsigned char>(text[i]);
                if (c < 33 || c > 126 || c == '=') {
                    return make_error(
                        fmt::format("invalid character {} in value of ESMTP parameter {}", describe_byte(c), keyword));
                }
                value += static_cast<char>(c);
                ++i;
            }
            if (value.empty()) return make_error(fmt::format("empty value for ESMTP parameter {}", keyword));
        }
        if (find_parameter(parameters, keyword)) return make_error(fmt::format("duplicate ESMTP parameter {}", keyword));
        parameters.emplace_back(std::move(keyword), std::move(value));
    }
}

std::optional<std::string_view> find_parameter(const MailParameters& parameters, std::string_view keyword) {
    for (const auto& [name, value] : parameters) {
        if (iequals(name, keyword)) return std::string_view(value);
    }
    return std::nullopt;
}

Result<std::pair<Path, MailParameters>> parse_mail_argument(std::string_view after_colon, PathOptions options) {
    std::string_view text = after_colon;
    if (!text.empty() && text.front() == ' ') text.remove_prefix(1);
    if (text.empty()) return make_error("missing path");
    if (text.front() != '<') return make_error("path must be enclosed in angle brackets (missing '<')");
    // The path ends at the first '>' outside a quoted string; scanning stops
    // at the length limit so a huge line costs nothing.
    size_t end = 1;
    bool in_quotes = false;
    for (; end < text.size() && end < max_path_length; ++end) {
        const char c = text[end];
        if (in_quotes && c == '\\') {
            ++end;
        } else if (c == '"') {
            in_quotes = !in_quotes;
        } else if (c == '>' && !in_quotes) {
            break;
        }
    }
    if (end >= text.size() || text[end] != '>') {
        if (end >= max_path_length) {
            return make_error(fmt::format("path longer than {} octets (RFC 5321 §4.5.3.1.3)", max_path_length));
        }
        return make_error("path must be enclosed in angle brackets (missing '>')");
    }
    auto path = parse_path(text.substr(0, end + 1), options);
    if (!path) return make_error(path.error());
    std::string_view rest = text.substr(end + 1);
    if (!rest.empty() && rest.front() != ' ') {
        return make_error(fmt::format("unexpected {} after path (parameters must follow a space)", describe_byte(rest.front())));
    }
    auto parameters = parse_esmtp_parameters(rest);
    if (!parameters) return make_error(parameters.error());
    return std::pair<Path, MailParameters>(std::move(path).value(), std::move(parameters).value());
}


Status check_domain(std::string_view domain, bool allow_utf8) {
    if (domain.empty()) return make_error("empty domain");
    if (domain.size() > max_domain_length) {
        return make_error(fmt::format("domain longer than {} octets (RFC 5321 §4.5.3.1.2)", max_domain_length));
    }
    size_t label_start = 0;
    for (size_t i = 0; i <= domain.size(); ++i) {
        if (i == domain.size() || domain[i] == '.') {
            const std::string_view label = domain.substr(label_start, i - label_start);
            if (label.empty()) return make_error("empty label in domain (misplaced '.')");
            if (label.size() > max_label_length) {
                return make_error(fmt::format("domain label longer than {} octets (RFC 1035 §2.3.4)", max_label_length));
            }
            if (label.front() == '-' || label.back() == '-') return make_error("domain label starts or ends with '-'");
            label_start = i + 1;
            continue;
        }
        const auto c = static_cast<unsigned char>(domain[i]);
        if (c >= 0x80) {
            auto length = eight_bit(domain, i, allow_utf8, "domain");
            if (!length) return make_error(length.error());
            i += *length - 1;
        } else if (!is_let_dig(c) && c != '-') {
            return make_error(fmt::format("invalid character {} in domain", describe_byte(c)));
        }
    }
    return {};
}

bool is_valid_domain(std::string_view domain, bool allow_utf8) { return check_domain(domain, allow_utf8).ok(); }

std::string lowercase_domain(std::string_view domain) {
    std::string out(domain);
    for (char& c : out) c = to_lower(c);
    if (out.size() > 6 && out.front() == '[' && out.compare(1, 5, "ipv6:") == 0) out.replace(1, 5, "IPv6:");
    return out;
}

}  // namespace facteur::address
