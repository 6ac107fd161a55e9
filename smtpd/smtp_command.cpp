// SMTP command line parsing (RFC 5321 §4.1.1, §4.1.2, RFC 3030, RFC 4954).
#include "smtpd/smtp_command.hpp"

#include <array>
#include <charconv>
#include <utility>

#include "libmail/ascii.hpp"

namespace facteur::smtpd {
namespace {

constexpr std::array<std::pair<std::string_view, Verb>, 16> kVerbs{{
    {"HELO", Verb::helo},
    {"EHLO", Verb::ehlo},
    {"MAIL", Verb::mail},
    {"RCPT", Verb::rcpt},
    {"DATA", Verb::data},
    {"BDAT", Verb::bdat},
    {"RSET", Verb::rset},
    {"NOOP", Verb::noop},
    {"QUIT", Verb::quit},
    {"HELP", Verb::help},
    {"VRFY", Verb::vrfy},
    {"EXPN", Verb::expn},
    {"TURN", Verb::turn},
    {"ETRN", Verb::etrn},
    {"STARTTLS", Verb::starttls},
    {"AUTH", Verb::auth},
}};

bool is_blank(char c) { return c == ' ' || c == '\t'; }

std::string_view trim(std::string_view text) {
    while (!text.empty() && is_blank(text.front())) text.remove_prefix(1);
    while (!text.empty() && is_blank(text.back())) text.remove_suffix(1);
    return text;
}

Command failed(Command command, CommandError error, std::string_view why) {
    command.error = error;
    command.error_text = why;
    return command;
}

// "FROM:" / "TO:" right after the verb (RFC 5321 §4.1.1.2-3); a space
// before the colon is a common client mistake that Postfix also refuses.
bool strip_keyword(std::string_view& argument, std::string_view keyword) {
    if (argument.size() < keyword.size() || !ascii::iequals(argument.substr(0, keyword.size()), keyword)) return false;
    argument.remove_prefix(keyword.size());
    return true;
}

}  // namespace

std::string_view verb_name(Verb verb) {
    for (const auto& [name, value] : kVerbs)
        if (value == verb) return name;
    return "UNKNOWN";
}

Command parse_command(std::string_view line) {
    Command command;
    // RFC 5321 §2.3.8: lines end in CRLF; a bare LF is refused (DESIGN §5).
    if (!line.empty() && line.back() == '\n') {
        line.remove_suffix(1);
        if (line.empty() || line.back() != '\r')
            return failed(command, CommandError::bad_line_ending, "bare LF received; use CRLF");
        line.remove_suffix(1);
    }
    for (char c : line) {
        auto byte = static_cast<unsigned char>(c);
        if ((byte < 0x20 && c != '\t') || byte == 0x7f)
            return failed(command, CommandError::bad_character, "invalid character in command");
    }
    line = trim(line);
    size_t space = line.find_first_of(" \t");
    std::string_view name = line.substr(0, space);
    std::string_view argument = space == std::string_view::npos ? std::string_view() : trim(line.substr(space + 1));
    command.name = name;
    for (const auto& [verb_text, verb] : kVerbs) {
        if (ascii::iequals(name, verb_text)) {
            command.verb = verb;
            break;
        }
    }
    if (command.verb == Verb::unknown) return failed(command, CommandError::unknown_command, "command not recognized");

    switch (command.verb) {
        case Verb::mail:
            if (!strip_keyword(argument, "FROM:"))
                return failed(command, CommandError::syntax, "Syntax: MAIL FROM:<address>");
            break;
        case Verb::rcpt:
            if (!strip_keyword(argument, "TO:")) return failed(command, CommandError::syntax, "Syntax: RCPT TO:<address>");
            break;
        case Verb::helo:
        case Verb::ehlo:
            if (argument.empty()) {
                return failed(command, CommandError::syntax,
                              command.verb == Verb::helo ? "Syntax: HELO hostname" : "Syntax: EHLO hostname");
            }
            break;
        case Verb::data:
        case Verb::rset:
        case Verb::quit:
        case Verb::starttls:
            // RFC 5321 §4.1.1.4, §4.1.1.5, §4.1.1.10; RFC 3207 §4: no parameters.
            if (!argument.empty()) return failed(command, CommandError::syntax, "this command takes no argument");
            break;
        case Verb::bdat:
            if (argument.empty()) return failed(command, CommandError::syntax, "Syntax: BDAT size [LAST]");
            break;
        case Verb::auth:
            if (argument.empty()) return failed(command, CommandError::syntax, "Syntax: AUTH mechanism [initial-response]");
            break;
        case Verb::etrn:
            if (argument.empty()) return failed(command, CommandError::syntax, "Syntax: ETRN domain");
            break;
        case Verb::vrfy:
        case Verb::expn:
            if (argument.empty()) return failed(command, CommandError::syntax, "argument required");
            break;
        default:
            break;
    }
    command.argument = argument;
    return command;
}

Result<MailArgument> split_mail_argument(std::string_view text) {
    if (!text.empty() && text.front() == ' ') text.remove_prefix(1);
    if (text.empty() || text.front() != '<') return make_error("path must be enclosed in angle brackets");
    bool in_quotes = false;
    for (size_t i = 1; i < text.size(); ++i) {
        char c = text[i];
        if (in_quotes && c == '\\') {
            ++i;
        } else if (c == '"') {
            in_quotes = !in_quotes;
        } else if (c == '>' && !in_quotes) {
            MailArgument out{text.substr(0, i + 1), text.substr(i + 1)};
            if (!out.parameters.empty() && out.parameters.front() != ' ')
                return make_error("parameters must follow the path after a space");
            return out;
        }
    }
    return make_error("path must be enclosed in angle brackets (missing '>')");
}

Result<BdatArgument> parse_bdat_argument(std::string_view argument) {
    argument = trim(argument);
    size_t space = argument.find_first_of(" \t");
    std::string_view size_text = argument.substr(0, space);
    std::string_view rest = space == std::string_view::npos ? std::string_view() : trim(argument.substr(space + 1));
    BdatArgument out;
    // chunk-size = 1*DIGIT; 19 digits always fit in 64 bits.
    if (size_text.empty() || size_text.size() > 19) return make_error("Syntax: BDAT size [LAST]");
    for (char c : size_text)
        if (c < '0' || c > '9') return make_error("Syntax: BDAT size [LAST]");
    auto [end, error] = std::from_chars(size_text.data(), size_text.data() + size_text.size(), out.size);
    if (error != std::errc() || end != size_text.data() + size_text.size()) return make_error("Syntax: BDAT size [LAST]");
    if (!rest.empty()) {
        if (!ascii::iequals(rest, "LAST")) return make_error("Syntax: BDAT size [LAST]");
        out.last = true;
    }
    return out;
}

Result<AuthArgument> parse_auth_argument(std::string_view argument) {
    argument = trim(argument);
    size_t space = argument.find_first_of(" \t");
    AuthArgument out;
    out.mechanism = argument.substr(0, space);
    if (out.mechanism.empty() || out.mechanism.size() > 20) return make_error("Syntax: AUTH mechanism [initial-response]");
    // RFC 4422 §3.1 mechanism names: upper-case letters, digits, '-' and '_'.
    for (char c : out.mechanism) {
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
        if (!ok) return make_error("Syntax: AUTH mechanism [initial-response]");
    }
    if (space != std::string_view::npos) {
        std::string_view response = trim(argument.substr(space + 1));
        if (response.find_first_of(" \t") != std::string_view::npos)
            return make_error("Syntax: AUTH mechanism [initial-response]");
        if (!response.empty()) out.initial_response = response;
    }
    return out;
}

Result<EtrnArgument> parse_etrn_argument(std::string_view argument) {
    argument = trim(argument);
    EtrnArgument out;
    if (!argument.empty() && argument.front() == '@') {
        out.kind = EtrnArgument::Kind::subdomains;
        argument.remove_prefix(1);
    } else if (!argument.empty() && argument.front() == '#') {
        out.kind = EtrnArgument::Kind::queue;
        argument.remove_prefix(1);
    }
    // A node name: a domain (RFC 1035 labels, '_' tolerated); a queue name
    // is held to the same characters. No address literals: nothing is
    // queued for those by name.
    if (argument.empty() || argument.size() > 255 || argument.front() == '.' || argument.back() == '.')
        return make_error("Syntax: ETRN domain");
    char previous = '.';
    for (char c : argument) {
        bool label = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
        if (c == '.' ? previous == '.' : !label) return make_error("Syntax: ETRN domain");
        previous = c;
    }
    out.name = argument;
    return out;
}

}  // namespace facteur::smtpd
