// Unit tests for libmail/mime_downgrade: 8-bit MIME leaf parts re-encoded as
// quoted-printable (RFC 2045 §6.7), the refusals, and the 7-bit invariants.
#include <catch2/catch.hpp>

#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "libmail/mime_downgrade.hpp"

using facteur::mime::downgrade_to_7bit;
using facteur::mime::has_8bit;

namespace {

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;  // RFC 2045 §6.7 rule 1: uppercase only from an encoder
}

// A strict quoted-printable decoder: soft line breaks removed, =XX decoded,
// hard CRLF kept. Anything an encoder must not produce fails the test.
std::string qp_decode(std::string_view encoded) {
    std::string out;
    for (size_t i = 0; i < encoded.size(); ++i) {
        char c = encoded[i];
        if (c == '=') {
            if (encoded.substr(i + 1, 2) == "\r\n") {
                i += 2;
                continue;
            }
            REQUIRE(i + 2 < encoded.size());
            int high = hex_value(encoded[i + 1]), low = hex_value(encoded[i + 2]);
            REQUIRE(high >= 0);
            REQUIRE(low >= 0);
            out += static_cast<char>(high * 16 + low);
            i += 2;
            continue;
        }
        if (c == '\r') REQUIRE(encoded.substr(i, 2) == "\r\n");
        out += c;
    }
    return out;
}

// Every encoded line at most 76 characters, no trailing white space.
void check_qp_lines(std::string_view encoded) {
    size_t start = 0;
    while (start <= encoded.size()) {
        size_t end = encoded.find("\r\n", start);
        std::string_view line = encoded.substr(start, (end == std::string_view::npos ? encoded.size() : end) - start);
        INFO(std::string(line));
        CHECK(line.size() <= 76);
        if (!line.empty()) CHECK((line.back() != ' ' && line.back() != '\t'));
        if (end == std::string_view::npos) break;
        start = end + 2;
    }
}

// The promises of downgrade_to_7bit's output; empty when all are kept.
std::string seven_bit_problem(std::string_view message) {
    size_t line_length = 0;
    for (size_t i = 0; i < message.size(); ++i) {
        auto c = static_cast<unsigned char>(message[i]);
        if (c >= 0x80 || c == 0) return "8-bit byte or NUL at offset " + std::to_string(i);
        if (c == '\r') {
            if (i + 1 >= message.size() || message[i + 1] != '\n') return "bare CR at offset " + std::to_string(i);
            ++i;
            line_length = 0;
            continue;
        }
        if (c == '\n') return "bare LF at offset " + std::to_string(i);
        if (++line_length > 998) return "line over 998 octets at offset " + std::to_string(i);
    }
    return {};
}

void check_7bit(std::string_view message) { REQUIRE(seven_bit_problem(message) == ""); }

std::string convert(std::string_view message) {
    auto result = downgrade_to_7bit(message);
    INFO((result.ok() ? std::string() : result.error()));
    REQUIRE(result.ok());
    check_7bit(*result);
    return *result;
}

std::string refusal(std::string_view message) {
    auto result = downgrade_to_7bit(message);
    REQUIRE_FALSE(result.ok());
    CHECK(result.error().find("cannot convert") != std::string::npos);
    return result.error();
}

std::string body_of(std::string_view message) {
    size_t blank = message.find("\r\n\r\n");
    REQUIRE(blank != std::string_view::npos);
    return std::string(message.substr(blank + 4));
}

const std::string latin1_header =
    "From: a@example.test\r\nSubject: hello\r\nMIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\nX-After: kept\r\n\r\n";

}  // namespace

TEST_CASE("mime_downgrade: has_8bit", "[mime]") {
    CHECK_FALSE(has_8bit(""));
    CHECK_FALSE(has_8bit("Subject: x\r\n\r\nplain ascii ~\x7f\r\n"));
    CHECK(has_8bit("caf\xe9"));
    CHECK(has_8bit("\xc3\xa9"));
    CHECK(has_8bit(std::string_view("a\0b", 3)));
}

TEST_CASE("mime_downgrade: a 7-bit message is returned unchanged", "[mime]") {
    for (std::string message : {std::string("Subject: x\r\n\r\nhello\r\n"), std::string(),
                                std::string("no header at all, bare\nLF and a ") + std::string(2000, 'x')}) {
        auto result = downgrade_to_7bit(message);
        REQUIRE(result.ok());
        CHECK(*result == message);
    }
}

TEST_CASE("mime_downgrade: single latin-1 part becomes quoted-printable in place", "[mime]") {
    std::string message = latin1_header + "Caf\xe9 cr\xe8me br\xfbl\xe9" "e\r\nsecond line\r\n";
    std::string out = convert(message);
    CHECK(out ==
          "From: a@example.test\r\nSubject: hello\r\nMIME-Version: 1.0\r\n"
          "Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\nX-After: kept\r\n\r\n"
          "Caf=E9 cr=E8me br=FBl=E9e\r\nsecond line\r\n");
    CHECK(qp_decode(body_of(out)) == body_of(message));
}

TEST_CASE("mime_downgrade: UTF-8 part without Content-Transfer-Encoding gets one", "[mime]") {
    std::string message = "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\xc3\xa9t\xc3\xa9\r\n";
    std::string out = convert(message);
    CHECK(out ==
          "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
          "=C3=A9t=C3=A9\r\n");
}

TEST_CASE("mime_downgrade: a message without MIME headers is a text/plain leaf", "[mime]") {
    std::string message = "From: a@example.test\r\nSubject: old style\r\n\r\nGr\xfc\xdf" "e\r\n";
    std::string out = convert(message);
    CHECK(out ==
          "From: a@example.test\r\nSubject: old style\r\nMIME-Version: 1.0\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
          "Gr=FC=DFe\r\n");
    // Duplicated Content-Transfer-Encoding fields collapse into one.
    std::string duplicated = "Content-Transfer-Encoding: 8bit\r\nMIME-Version: 1.0\r\ncontent-transfer-encoding: binary\r\n\r\n\xff";
    CHECK(convert(duplicated) == "Content-Transfer-Encoding: quoted-printable\r\nMIME-Version: 1.0\r\n\r\n=FF");
}

TEST_CASE("mime_downgrade: trailing white space, '=' signs, control bytes", "[mime]") {
    std::string body = "abc \xe9  \r\nnext\t\r\na=b == c\r\nbare\rcr and bare\nlf\r\n \r\n\xe9 ";
    std::string out = convert(latin1_header + body);
    CHECK(body_of(out) == "abc =E9 =20\r\nnext=09\r\na=3Db =3D=3D c\r\nbare=0Dcr and bare=0Alf\r\n=20\r\n=E9=20");
    CHECK(qp_decode(body_of(out)) == body);
}

TEST_CASE("mime_downgrade: long lines get soft line breaks within 76 characters", "[mime]") {
    std::string body;
    for (int i = 0; i < 300; ++i) body += "\xe9";
    body += "\r\n" + std::string(5000, 'a') + "\xe9\r\n";
    for (int i = 0; i < 200; ++i) body += "x y=";
    body += "\r\n";
    std::string out = convert(latin1_header + body);
    check_qp_lines(body_of(out));
    CHECK(qp_decode(body_of(out)) == body);
    // Exactly 76 characters fit when the line ends there.
    std::string exact = std::string(73, 'a') + "\xe9\r\n";
    CHECK(body_of(convert(latin1_header + exact)) == std::string(73, 'a') + "=E9\r\n");
    std::string one_more = std::string(74, 'a') + "\xe9\r\n";
    CHECK(body_of(convert(latin1_header + one_more)) == std::string(74, 'a') + "=\r\n=E9\r\n");
}

TEST_CASE("mime_downgrade: nested multipart, 7-bit siblings untouched byte for byte", "[mime]") {
    const std::string plain_8bit = "Caf\xe9 ol\xe9\r\n=== signature ===  \r\n\xe2\x82\xac";
    const std::string html_7bit = "Content-Type: text/html; charset=us-ascii\r\n\r\n<p>Caf&eacute;</p>\r\n";
    const std::string attachment =
        "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
        "Content-Disposition: attachment; filename=\"x.bin\"\r\n\r\nAAECAwQFBgc=\r\n";
    std::string message =
        "From: a@example.test\r\nMIME-Version: 1.0\r\n"
        "Content-Type: multipart/mixed;\r\n\tBOUNDARY=outer-42\r\n"
        "\r\n"
        "This is a multi-part message in MIME format.\r\n"
        "--outer-42\r\n"
        "Content-Type: multipart/alternative; boundary=\"=_inner; (odd) boundary\"\r\n"
        "\r\n"
        "--=_inner; (odd) boundary\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n"
        "\r\n" +
        plain_8bit +
        "\r\n"
        "--=_inner; (odd) boundary \t\r\n" +
        html_7bit +
        "\r\n"
        "--=_inner; (odd) boundary--\r\n"
        "\r\n"
        "--outer-42\r\n" +
        attachment +
        "\r\n"
        "--outer-42--\r\n"
        "epilogue\r\n";
    std::string out = convert(message);
    // Everything but the 8-bit part is kept as it was.
    CHECK(out.find(html_7bit) != std::string::npos);
    CHECK(out.find(attachment) != std::string::npos);
    CHECK(out.rfind("From: a@example.test\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed;\r\n\tBOUNDARY=outer-42\r\n\r\n"
                    "This is a multi-part message in MIME format.\r\n--outer-42\r\n",
                    0) == 0);
    CHECK(out.find("\r\n--outer-42--\r\nepilogue\r\n") != std::string::npos);
    CHECK(out.find("--=_inner; (odd) boundary \t\r\n") != std::string::npos);
    // The converted part decodes back to its bytes.
    std::string converted_header = "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n";
    size_t start = out.find(converted_header);
    REQUIRE(start != std::string::npos);
    start += converted_header.size();
    size_t end = out.find("\r\n--=_inner; (odd) boundary", start);
    REQUIRE(end != std::string::npos);
    std::string encoded = out.substr(start, end - start);
    CHECK(encoded == "Caf=E9 ol=E9\r\n=3D=3D=3D signature =3D=3D=3D =20\r\n=E2=82=AC");
    CHECK(qp_decode(encoded) == plain_8bit);
    // Nothing but that part changed.
    std::string expected = message;
    size_t at = expected.find("Content-Transfer-Encoding: 8bit\r\n\r\n" + plain_8bit);
    REQUIRE(at != std::string::npos);
    expected.replace(at, std::string("Content-Transfer-Encoding: 8bit\r\n\r\n").size() + plain_8bit.size(),
                     "Content-Transfer-Encoding: quoted-printable\r\n\r\n" + encoded);
    CHECK(out == expected);
}

TEST_CASE("mime_downgrade: multipart labelled 8bit is relabelled 7bit", "[mime]") {
    std::string message =
        "MIME-Version: 1.0\r\nContent-Type: Multipart/Mixed; boundary=b\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        "--b\r\n\r\n\xe9\r\n--b--\r\n";
    CHECK(convert(message) ==
          "MIME-Version: 1.0\r\nContent-Type: Multipart/Mixed; boundary=b\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
          "--b\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=E9\r\n--b--\r\n");
}

TEST_CASE("mime_downgrade: boundary forms", "[mime]") {
    auto [content_type, boundary] = GENERATE(table<std::string, std::string>({
        {"multipart/mixed; boundary=simple", "simple"},
        {"multipart/mixed; boundary=\"quoted with space\"", "quoted with space"},
        {"multipart/mixed; charset=x; Boundary=\"a\\\"b\"", "a\"b"},
        {"multipart/mixed (comment); boundary = spaced ; x=y", "spaced"},
        {"MULTIPART/RELATED;\r\n boundary=\"folded\";\r\n type=\"text/html\"", "folded"},
        {"multipart/mixed; boundary=\"----=_Part_0_123.456\"", "----=_Part_0_123.456"},
    }));
    std::string message = "MIME-Version: 1.0\r\nContent-Type: " + content_type + "\r\n\r\n--" + boundary +
                          "\r\nContent-Type: text/plain\r\n\r\n\xe9\r\n--" + boundary + "--\r\n";
    std::string out = convert(message);
    CHECK(out.find("--" + boundary + "\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=E9\r\n--" +
                   boundary + "--\r\n") != std::string::npos);
}

TEST_CASE("mime_downgrade: unclosed multipart and empty parts", "[mime]") {
    std::string unclosed = "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n\xe9\r\n--b\r\n\r\nplain\r\n";
    CHECK(body_of(convert(unclosed)) == "--b\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=E9\r\n--b\r\n\r\nplain\r\n");
    std::string empty_parts = "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n--b\r\n\r\n\xe9\r\n--b--";
    CHECK(body_of(convert(empty_parts)) == "--b\r\n--b\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=E9\r\n--b--");
    // "--bx" is not a delimiter of boundary "b".
    std::string lookalike = "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n--bx \xe9\r\n--b--\r\n";
    CHECK(body_of(convert(lookalike)) == "--b\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n--bx =E9\r\n--b--\r\n");
}

TEST_CASE("mime_downgrade: refusals", "[mime]") {
    SECTION("8-bit header") {
        CHECK(refusal("Subject: caf\xe9\r\n\r\nbody\r\n").find("8-bit data in a message header") != std::string::npos);
        CHECK(refusal("Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Description: \xe9\r\n\r\nx\r\n--b--\r\n")
                  .find("MIME part header") != std::string::npos);
    }
    SECTION("preamble and epilogue") {
        CHECK(refusal("Content-Type: multipart/mixed; boundary=b\r\n\r\npr\xe9" "amble\r\n--b\r\n\r\nx\r\n--b--\r\n")
                  .find("preamble or epilogue") != std::string::npos);
        CHECK(refusal("Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nx\r\n--b--\r\n\xe9pilogue\r\n")
                  .find("preamble or epilogue") != std::string::npos);
    }
    SECTION("message/* parts") {
        std::string error = refusal(
            "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: message/rfc822\r\n\r\n"
            "Subject: inner\r\n\r\n\xe9\r\n--b--\r\n");
        CHECK(error.find("message/rfc822") != std::string::npos);
        CHECK(error.find("RFC 2046") != std::string::npos);
        // multipart/digest parts are message/rfc822 by default (RFC 2046 §5.1.5).
        CHECK(refusal("Content-Type: multipart/digest; boundary=b\r\n\r\n--b\r\n\r\nSubject: x\r\n\r\n\xe9\r\n--b--\r\n")
                  .find("message/rfc822") != std::string::npos);
        CHECK(refusal("MIME-Version: 1.0\r\nContent-Type: message/global\r\n\r\n\xe9\r\n").find("message/global") !=
              std::string::npos);
    }
    SECTION("encoded parts that still hold 8-bit data") {
        CHECK(refusal("MIME-Version: 1.0\r\nContent-Transfer-Encoding: base64\r\n\r\n\xe9\r\n").find("declared base64") !=
              std::string::npos);
        CHECK(refusal("MIME-Version: 1.0\r\nContent-Transfer-Encoding: Quoted-Printable\r\n\r\n\xe9\r\n")
                  .find("declared quoted-printable") != std::string::npos);
        CHECK(refusal("MIME-Version: 1.0\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\n\xe9\r\n").find("x-uuencode") !=
              std::string::npos);
        CHECK(refusal("Content-Type: multipart/mixed; boundary=b\r\nContent-Transfer-Encoding: base64\r\n\r\n--b\r\n\r\n\xe9\r\n--b--\r\n")
                  .find("RFC 2045 §6.4") != std::string::npos);
    }
    SECTION("broken multipart") {
        CHECK(refusal("Content-Type: multipart/mixed\r\n\r\n\xe9\r\n").find("without a boundary") != std::string::npos);
        CHECK(refusal("Content-Type: multipart/mixed; boundary=\"\"\r\n\r\n\xe9\r\n").find("without a boundary") !=
              std::string::npos);
        CHECK(refusal("Content-Type: multipart/mixed; boundary=b\r\n\r\n--c\r\n\r\n\xe9\r\n").find("without any part") !=
              std::string::npos);
        CHECK(refusal("Content-Type: multipart/mixed; boundary=b\r\n\r\n--b--\r\n\xe9\r\n").find("without any part") !=
              std::string::npos);
    }
}

namespace {

std::string nested(int levels, std::string_view leaf) {
    std::string message = std::string(leaf);
    for (int level = levels; level > 0; --level) {
        std::string boundary = "b" + std::to_string(level);
        message = "Content-Type: multipart/mixed; boundary=" + boundary + "\r\n\r\n--" + boundary + "\r\n" + message + "\r\n--" +
                  boundary + "--\r\n";
    }
    return message;
}

}  // namespace

TEST_CASE("mime_downgrade: nesting limit", "[mime]") {
    std::string leaf = "Content-Type: text/plain\r\n\r\n\xe9";
    std::string ok = convert(nested(50, leaf));
    CHECK(ok.find("Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=E9\r\n--b50--") !=
          std::string::npos);
    CHECK(refusal(nested(51, leaf)).find("nested deeper than 50") != std::string::npos);
    // A deep but 7-bit subtree is copied without being walked: only the
    // 8-bit epilogue of the top level matters.
    std::string deep_7bit = nested(200, "\r\nx") + "\xe9";
    CHECK(refusal(deep_7bit).find("epilogue") != std::string::npos);
}

namespace {

// Random MIME trees: every leaf either 7-bit clean or arbitrary bytes.
struct Generated {
    std::string text;
    // One entry per leaf, in order: its original body and whether it must
    // come out converted.
    std::vector<std::pair<std::string, bool>> leaves;
};

std::string random_bytes(std::mt19937& random, size_t length, bool eight_bit) {
    std::string out;
    std::uniform_int_distribution<int> byte(0, 255), ascii(32, 126), kind(0, 9);
    while (out.size() < length) {
        int k = kind(random);
        if (k == 0) {
            out += "\r\n";
        } else if (eight_bit && k < 4) {
            out += static_cast<char>(byte(random));
        } else if (k == 4) {
            out += (byte(random) % 2) ? ' ' : '=';
        } else {
            out += static_cast<char>(ascii(random));
        }
    }
    return out;
}

void generate(std::mt19937& random, int depth, Generated& out, int& boundary_counter) {
    std::uniform_int_distribution<int> choice(0, 3);
    if (depth < 4 && choice(random) == 0) {
        std::string boundary = "=_bound" + std::to_string(boundary_counter++);
        out.text += "Content-Type: multipart/mixed; boundary=\"" + boundary + "\"\r\n\r\npreamble\r\n";
        int parts = std::uniform_int_distribution<int>(1, 4)(random);
        for (int i = 0; i < parts; ++i) {
            out.text += "--" + boundary + "\r\n";
            generate(random, depth + 1, out, boundary_counter);
            out.text += "\r\n";
        }
        out.text += "--" + boundary + "--\r\n";
        return;
    }
    bool eight_bit = choice(random) != 0;
    std::string body;
    do {
        body = random_bytes(random, std::uniform_int_distribution<size_t>(0, 3000)(random), eight_bit);
    } while (body.find("\r\n--") != std::string::npos || body.rfind("--", 0) == 0);
    // 8-bit bytes, NUL, a bare CR or LF, or a line over 998 octets force
    // the conversion of the leaf.
    bool converted = false;
    size_t line = 0;
    for (size_t i = 0; i < body.size(); ++i) {
        auto c = static_cast<unsigned char>(body[i]);
        if (c == '\r' && i + 1 < body.size() && body[i + 1] == '\n') {
            ++i;
            line = 0;
            continue;
        }
        if (c >= 0x80 || c == 0 || c == '\r' || c == '\n' || ++line > 998) converted = true;
    }
    out.text += "Content-Type: text/plain; charset=x-unknown\r\n\r\n" + body;
    out.leaves.emplace_back(body, converted);
}

}  // namespace

TEST_CASE("mime_downgrade: random trees keep the invariants and round-trip", "[mime]") {
    std::mt19937 random(20240611);
    for (int run = 0; run < 300; ++run) {
        Generated generated;
        int boundary_counter = 0;
        generated.text = "MIME-Version: 1.0\r\n";
        generate(random, 0, generated, boundary_counter);
        INFO("run " << run);
        auto result = downgrade_to_7bit(generated.text);
        REQUIRE(result.ok());
        check_7bit(*result);
        if (!has_8bit(generated.text)) {
            CHECK(*result == generated.text);
            continue;
        }
        // Walk the output leaves in order: each leaf header is our fixed
        // Content-Type line, followed by the CTE line when converted.
        size_t pos = 0;
        for (size_t i = 0; i < generated.leaves.size(); ++i) {
            const auto& [original, converted] = generated.leaves[i];
            static const std::string leaf_header = "Content-Type: text/plain; charset=x-unknown\r\n";
            pos = result->find(leaf_header, pos);
            REQUIRE(pos != std::string::npos);
            pos += leaf_header.size();
            static const std::string qp = "Content-Transfer-Encoding: quoted-printable\r\n\r\n";
            if (converted) {
                REQUIRE(result->compare(pos, qp.size(), qp) == 0);
                pos += qp.size();
            } else {
                REQUIRE(result->compare(pos, 2, "\r\n") == 0);
                pos += 2;
            }
            // The leaf ends at the next "\r\n--" (its delimiter) or the end.
            size_t end = result->find("\r\n--=_bound", pos);
            if (end == std::string::npos) end = result->size();
            std::string body = result->substr(pos, end - pos);
            if (converted) {
                check_qp_lines(body);
                CHECK(qp_decode(body) == original);
            } else {
                CHECK(body == original);
            }
            pos = end;
        }
    }
}

TEST_CASE("mime_downgrade: arbitrary bytes never break the output invariants", "[mime]") {
    std::mt19937 random(7);
    std::uniform_int_distribution<int> byte(0, 255);
    const std::vector<std::string> prefixes = {
        "", "MIME-Version: 1.0\r\n\r\n", "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n",
        "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: multipart/alternative; boundary=c\r\n\r\n--c\r\n\r\n"};
    for (int run = 0; run < 2000; ++run) {
        std::string message = prefixes[static_cast<size_t>(run) % prefixes.size()];
        size_t length = std::uniform_int_distribution<size_t>(0, 400)(random);
        for (size_t i = 0; i < length; ++i) {
            int b = byte(random);
            if (b < 40) {
                message += "\r\n";
            } else if (b < 50) {
                message += "--b";
            } else {
                message += static_cast<char>(b);
            }
        }
        auto result = downgrade_to_7bit(message);
        if (result.ok() && has_8bit(message)) check_7bit(*result);
        if (!result.ok()) CHECK_FALSE(result.error().empty());
    }
}
