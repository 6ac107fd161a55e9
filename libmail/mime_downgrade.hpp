// 8BITMIME -> 7bit conversion for relayd (RFC 6152 §3, as Postfix does):
// a message received with BODY=8BITMIME going to a server that does not
// announce 8BITMIME has every 8-bit MIME leaf part re-encoded as
// quoted-printable (RFC 2045 §6.7), walking multipart/* bodies; the header
// and MIME structure are otherwise left as they were. Refused (so the
// message is bounced rather than damaged) when that cannot be done safely:
// 8-bit bytes in a header, in a multipart preamble/epilogue, in a
// message/* part (RFC 2046 §5.2: must stay 7bit/8bit/binary, never encoded),
// or a part declared base64/quoted-printable that still holds 8-bit bytes.
#pragma once

#include <string>
#include <string_view>

#include "libmail/result.hpp"

namespace facteur::mime {

// True when any byte of `message` is >= 0x80 (or NUL). A message without
// any needs no conversion at all, whatever BODY= said.
bool has_8bit(std::string_view message);

// `message` as stored in the queue (CRLF line ends, not dot-stuffed).
// Returns the converted message (CRLF line ends, every line at most 998
// octets, 7-bit only), or an error saying why it cannot be converted.
Result<std::string> downgrade_to_7bit(std::string_view message);

}  // namespace facteur::mime
