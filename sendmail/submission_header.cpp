// Envelope addresses and header rewriting for sendmail (sendmail/submission_header.hpp).
#include "sendmail/submission_header.hpp"

#include <algorithm>
#include <set>

#include <fmt/format.h>

#include "libmail/address.hpp"
#include "libmail/base64.hpp"
#include "libmail/log.hpp"
#include "libmail/message_header.hpp"

namespace facteur::sendmail {
namespace {

std::string_view trim(std::string_view text) {
    size_t begin = text.find_first_not_of(" \t");
    if (begin == std::string_view::npos) return {};
    size_t end = text.find_last_not_of(" \t");
    return text.substr(begin, end - begin + 1);
}

// The canonical forward-path text of one address, or why it is unusable.
Result<std::string> canonical_address(const std::string& text) {
    auto path = address::parse_path("<" + text + ">", {.allow_null = false, .allow_utf8 = true});
    if (!path) return make_error(fmt::format("bad address <{}>: {}", log::printable(text, 300), path.error()));
    if (path->domain.empty()) return make_error(fmt::format("bad address <{}>: no domain", log::printable(text, 300)));
    return path->to_string();
}

// Bare local parts ("bob" or "bob, alice"): the addresses they name here.
Result<std::vector<std::string>> local_parts(std::string_view text, std::string_view hostname) {
    std::vector<std::string> out;
    while (!text.empty()) {
        size_t comma = text.find(',');
        std::string_view word = trim(text.substr(0, comma));
        text = comma == std::string_view::npos ? std::string_view() : text.substr(comma + 1);
        if (word.empty()) continue;  // "a,,b" and a trailing comma, as RFC 5322 §4.4 tolerates
        auto address = canonical_address(fmt::format("{}@{}", word, hostname));
        if (!address) return make_error(address.error());
        out.push_back(std::move(address).value());
    }
    return out;
}

// An address list from a header or an operand; bare local parts qualified.
Result<std::vector<std::string>> address_list(std::string_view text, std::string_view hostname) {
    if (text.find('@') == std::string_view::npos && text.find_first_of("<>:;\"()") == std::string_view::npos)
        return local_parts(text, hostname);
    auto mailboxes = address::parse_address_list(text);
    if (!mailboxes) return make_error(mailboxes.error());
    std::vector<std::string> out;
    for (const address::Mailbox& mailbox : *mailboxes) {
        auto address = canonical_address(mailbox.address());
        if (!address) return make_error(address.error());
        out.push_back(std::move(address).value());
    }
    return out;
}

bool is_atext(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           std::string_view("!#$%&'*+-/=?^_`{|}~").find(static_cast<char>(c)) != std::string_view::npos;
}

// Text for a header comment: printable ASCII without the comment's own
// delimiters (a login name is not ours to trust blindly).
std::string comment_safe(std::string_view text) {
    std::string out;
    for (unsigned char c : text) out += (c > 32 && c < 127 && c != '(' && c != ')' && c != '\\') ? static_cast<char>(c) : '?';
    return out.empty() ? "?" : out;
}

// Byte length of the UTF-8 character starting with `lead` (1 for anything
// malformed, so splitting always advances).
size_t utf8_length(unsigned char lead) {
    if (lead >= 0xF0 && lead <= 0xF4) return 4;
    if (lead >= 0xE0) return lead <= 0xEF ? 3 : 1;
    if (lead >= 0xC2) return 2;
    return 1;
}

}  // namespace

Result<std::vector<std::string>> parse_recipient_argument(std::string_view argument, std::string_view hostname) {
    auto addresses = address_list(argument, hostname);
    if (!addresses) return make_error(fmt::format("recipient '{}': {}", log::printable(argument, 300), addresses.error()));
    if (addresses->empty()) return make_error(fmt::format("recipient '{}': no address", log::printable(argument, 300)));
    return addresses;
}

Result<std::string> envelope_sender(const std::optional<std::string>& option, std::string_view login,
                                    std::string_view hostname) {
    if (!option) {
        auto address = canonical_address(fmt::format("{}@{}", login, hostname));
        if (!address) return make_error(fmt::format("cannot make a sender address from the login name: {}", address.error()));
        return address;
    }
    std::string_view text = trim(*option);
    if (text.size() >= 2 && text.front() == '<' && text.back() == '>') text = text.substr(1, text.size() - 2);
    if (text.empty()) return std::string();  // the null reverse-path
    std::string full = text.find('@') == std::string_view::npos ? fmt::format("{}@{}", text, hostname) : std::string(text);
    auto address = canonical_address(full);
    if (!address) return make_error(fmt::format("sender: {}", address.error()));
    return address;
}

Result<std::vector<std::string>> header_recipients(std::string_view header, std::string_view hostname) {
    auto fields = message::parse_header(header);
    bool resent = std::any_of(fields.begin(), fields.end(), [](const message::HeaderField& field) {
        return message::same_name(field.name, "Resent-To") || message::same_name(field.name, "Resent-Cc") ||
               message::same_name(field.name, "Resent-Bcc");
    });
    std::vector<std::string_view> names = resent ? std::vector<std::string_view>{"Resent-To", "Resent-Cc", "Resent-Bcc"}
                                                 : std::vector<std::string_view>{"To", "Cc", "Bcc"};
    std::vector<std::string> out;
    for (const message::HeaderField& field : fields) {
        auto name = std::find_if(names.begin(), names.end(), [&](std::string_view n) { return message::same_name(field.name, n); });
        if (name == names.end()) continue;
        std::string unfolded = message::unfold(field.value);
        std::string_view value = unfolded;
        while (!value.empty() && (value.back() == '\n' || value.back() == '\r')) value.remove_suffix(1);
        value = trim(value);
        if (value.empty()) continue;  // "Bcc:" with nothing, as RFC 5322 §3.6.3 allows
        auto addresses = address_list(value, hostname);
        if (!addresses) return make_error(fmt::format("{}: header: {}", *name, addresses.error()));
        out.insert(out.end(), addresses->begin(), addresses->end());
    }
    return out;
}

Status add_recipients(std::vector<std::string>& recipients, const std::vector<std::string>& addresses) {
    // Same mailbox twice gets one copy; the domain is case-insensitive, the
    // local part is the receiving host's business (RFC 5321 §2.4).
    auto key = [](const std::string& address) {
        size_t at = address.rfind('@');
        return address.substr(0, at) + address::lowercase_domain(address.substr(at));
    };
    std::set<std::string> seen;
    for (const std::string& existing : recipients) seen.insert(key(existing));
    for (const std::string& address : addresses) {
        if (!seen.insert(key(address)).second) continue;
        if (recipients.size() >= kMaxRecipients) return make_error(fmt::format("more than {} recipients", kMaxRecipients));
        recipients.push_back(address);
    }
    return {};
}

std::string format_display_name(std::string_view name) {
    name = trim(name);
    bool ascii = std::all_of(name.begin(), name.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
    if (ascii) {
        bool atoms = !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
            return c == ' ' || is_atext(static_cast<unsigned char>(c));
        });
        if (atoms && name.find("  ") == std::string_view::npos) return std::string(name);
        std::string quoted = "\"";
        for (char c : name) {
            if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) continue;  // no controls in a header
            if (c == '"' || c == '\\') quoted += '\\';
            quoted += c;
        }
        return quoted + "\"";
    }
    // RFC 2047 §2: an encoded word is at most 75 characters; 45 bytes of
    // text make 60 of base64 plus the 12 of "=?UTF-8?B??=". Characters are
    // never split across words (§5).
    std::string out;
    size_t position = 0;
    while (position < name.size()) {
        size_t end = position;
        while (end < name.size()) {
            size_t length = utf8_length(static_cast<unsigned char>(name[end]));
            if (end + length - position > 45) break;
            end = std::min(name.size(), end + length);
        }
        if (end == position) end = std::min(name.size(), position + 1);
        if (!out.empty()) out += ' ';
        out += "=?UTF-8?B?" + base64::encode(name.substr(position, end - position)) + "?=";
        position = end;
    }
    return out;
}

std::string rewrite_header(std::string_view header, const HeaderContext& context) {
    std::string date = message::format_date(context.now);
    // RFC 5321 §4.4: the trace field goes on top.
    std::string out = fmt::format("Received: (from {}@localhost)\r\n\tby {} (facteur) id {};\r\n\t{}\r\n",
                                  comment_safe(context.login), context.hostname, context.queue_id, date);
    // RFC 5322 §3.6.3: Bcc recipients must stay hidden from the others.
    std::string kept = message::remove_fields(header, {"Bcc", "Resent-Bcc"});
    out += kept;
    if (!message::has_field(kept, "From")) {
        if (context.full_name.empty()) out += fmt::format("From: {}\r\n", context.from_address);
        else out += fmt::format("From: {} <{}>\r\n", format_display_name(context.full_name), context.from_address);
    }
    if (!message::has_field(kept, "Date")) out += fmt::format("Date: {}\r\n", date);
    if (!message::has_field(kept, "Message-ID"))
        out += fmt::format("Message-ID: <{}@{}>\r\n", context.queue_id, context.hostname);
    return out;
}

}  // namespace facteur::sendmail
