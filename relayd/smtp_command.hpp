// The commands relayd's SMTP client writes (RFC 5321 §4.1.1) with their
// ESMTP parameters (SIZE, BODY, SMTPUTF8, DSN), and the DATA transparency
// encoder. Pure functions, no I/O.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "libmail/queue.hpp"
#include "relayd/ehlo.hpp"

namespace facteur::relayd {

// RFC 3461 §4: xtext; '+', '=' and bytes outside 33..126 become "+XX".
std::string xtext_encode(std::string_view text);

// "MAIL FROM:<sender> SIZE=n BODY=8BITMIME SMTPUTF8 RET=FULL ENVID=x\r\n",
// each parameter only when the server announced its extension; `size` is
// the size of what will be sent, `eight_bit` whether BODY=8BITMIME is due
// (an 8-bit body not converted to 7 bit).
std::string mail_command(const queue::Envelope& envelope, const Capabilities& capabilities, uint64_t size,
                         bool eight_bit);
// "RCPT TO:<address> NOTIFY=... ORCPT=rfc822;xtext\r\n" (DSN parameters only
// when the server has DSN; NOTIFY only when the sender gave one).
std::string rcpt_command(const queue::Recipient& recipient, const Capabilities& capabilities);
// "SUCCESS,FAILURE,DELAY" / "NEVER" / "" for notify_default.
std::string notify_value(unsigned notify);

// RFC 5321 §4.5.2 transparency over a stream cut into arbitrary pieces: a
// line starting with "." gets another one in front.
class DotStuffer {
public:
    // Appends the stuffed form of `data` to `out`.
    void add(std::string_view data, std::string& out);
    // What ends the DATA: CRLF first when the message did not end with one
    // (an empty message sends only the dot), then ".\r\n".
    std::string finish() const;

private:
    bool at_line_start_ = true;
    bool after_cr_ = false;
};

bool has_non_ascii(std::string_view text);

}  // namespace facteur::relayd
