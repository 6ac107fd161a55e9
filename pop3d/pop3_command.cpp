// Parsing POP3 command lines, message numbers and counts (see pop3_command.hpp).
#include "pop3d/pop3_command.hpp"

#include <limits>

#include "libmail/ascii.hpp"

namespace facteur::pop3d {
namespace {

struct KeywordName {
    Keyword keyword;
    std::string_view name;
};

constexpr KeywordName kKeywords[] = {
    {Keyword::capa, "CAPA"}, {Keyword::user, "USER"}, {Keyword::pass, "PASS"}, {Keyword::apop, "APOP"},
    {Keyword::auth, "AUTH"}, {Keyword::stls, "STLS"}, {Keyword::quit, "QUIT"}, {Keyword::noop, "NOOP"},
    {Keyword::stat, "STAT"}, {Keyword::list, "LIST"}, {Keyword::retr, "RETR"}, {Keyword::dele, "DELE"},
    {Keyword::rset, "RSET"}, {Keyword::top, "TOP"},   {Keyword::uidl, "UIDL"}, {Keyword::last, "LAST"},
};

bool is_letter(char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }

}  // namespace

std::string_view strip_line_ending(std::string_view line) {
    if (!line.empty() && line.back() == '\n') {
        line.remove_suffix(1);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    }
    return line;
}

Command parse_command(std::string_view line) {
    Command command;
    std::string_view text = strip_line_ending(line);
    // A NUL could truncate the text in some later C API; a CR inside the
    // line is not a line end (we never guess at bare CRs).
    for (char c : text) {
        if (c == '\0' || c == '\r') {
            command.error = CommandError::bad_character;
            return command;
        }
    }
    if (text.empty()) {
        command.error = CommandError::empty;
        return command;
    }
    size_t space = text.find(' ');
    command.name = text.substr(0, space);
    if (space != std::string_view::npos) command.rest = text.substr(space + 1);

    // RFC 2449 §3: keywords are three or four printable characters; ours
    // are all letters, so anything else cannot be one of them.
    bool word = !command.name.empty() && command.name.size() <= 4;
    for (char c : command.name) word = word && is_letter(c);
    if (word) {
        for (const KeywordName& known : kKeywords) {
            if (ascii::iequals(known.name, command.name)) {
                command.keyword = known.keyword;
                break;
            }
        }
    }
    if (command.keyword == Keyword::unknown) {
        command.error = CommandError::unknown_command;
        if (!word) command.name = {};
        return command;
    }

    std::string_view arguments = command.rest;
    while (!arguments.empty() && (arguments.back() == ' ' || arguments.back() == '\t')) arguments.remove_suffix(1);
    // "STAT " (a trailing space, as some clients send) has no argument.
    if (!arguments.empty()) {
        for (;;) {
            size_t next = arguments.find(' ');
            command.arguments.push_back(arguments.substr(0, next));
            if (next == std::string_view::npos) break;
            arguments.remove_prefix(next + 1);
        }
    }
    return command;
}

std::string_view keyword_name(Keyword keyword) {
    for (const KeywordName& known : kKeywords)
        if (known.keyword == keyword) return known.name;
    return "UNKNOWN";
}

std::optional<uint64_t> parse_decimal(std::string_view text) {
    if (text.empty()) return std::nullopt;
    uint64_t value = 0;
    constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
    for (char c : text) {
        if (c < '0' || c > '9') return std::nullopt;
        uint64_t digit = static_cast<uint64_t>(c - '0');
        if (value > (kMax - digit) / 10) return std::nullopt;
        value = value * 10 + digit;
    }
    return value;
}

std::optional<size_t> parse_message_number(std::string_view text, size_t count) {
    std::optional<uint64_t> number = parse_decimal(text);
    if (!number || *number == 0 || *number > count) return std::nullopt;
    return static_cast<size_t>(*number);
}

}  // namespace facteur::pop3d
