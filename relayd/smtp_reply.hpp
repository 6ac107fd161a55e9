// SMTP replies as a client reads them (RFC 5321 §4.2): multi-line assembly
// with limits, the RFC 3463 enhanced status code, and Postfix-style text.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace facteur::relayd {

// A reply line may hold at most this many bytes including CRLF, and a reply
// at most this many lines; more is a protocol error (a server gone mad must
// not make relayd buffer without end).
inline constexpr size_t kMaxReplyLine = 4096;
inline constexpr size_t kMaxReplyLines = 100;

struct Reply {
    int code = 0;                    // 250
    std::vector<std::string> lines;  // raw lines without CRLF: "250-PIPELINING", "250 SIZE 10240000"
    std::string enhanced;            // "5.1.1" from the first line, when present and of the
                                     // code's class

    int kind() const { return code / 100; }  // 2, 3, 4, 5
    bool positive() const { return kind() == 2; }
    // The text after the code of each line ("PIPELINING", "SIZE 10240000").
    std::vector<std::string_view> texts() const;
    // The whole reply on one line, lines joined by a space, as Postfix
    // quotes it: "550-5.1.1 first 550 5.1.1 second".
    std::string joined() const;
    // The enhanced code, or "<class>.0.0" when the server gave none.
    std::string dsn() const;
};

// Assembles one reply from lines. add() takes one raw line (with or without
// its CRLF; a bare LF is tolerated from servers, as Postfix does).
class ReplyParser {
public:
    enum class State { more, done, error };
    State add(std::string_view line);
    // After done: the reply; the parser is ready for the next one.
    Reply take();
    // After error: what was wrong (printable).
    const std::string& error() const { return error_; }

private:
    Reply reply_;
    std::string error_;
};

// "5.1.1" at the start of `text` (class 2, 4 or 5; subject and detail of 1
// to 3 digits; followed by a space or the end), or empty (RFC 3463 §2).
std::string_view leading_enhanced_code(std::string_view text);

// The class digit of an enhanced code replaced: "5.7.8" -> "4.7.8".
std::string with_class(std::string_view dsn, char klass);

}  // namespace facteur::relayd
