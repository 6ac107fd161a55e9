// Unit tests for libmail/address: RFC 5321 paths and ESMTP parameters, RFC 5322
// address lists, SMTPUTF8, length limits and hostile input.
#include <catch2/catch.hpp>

#include <string>

#include "libmail/address.hpp"

using namespace facteur;
using namespace facteur::address;

namespace {

struct PathCase {
    const char* text;
    const char* local_part;
    const char* domain;
    const char* canonical;
    bool quoted;
    bool literal;
    bool route;
};

struct RejectCase {
    std::string text;
    const char* reason;  // a fragment the error must contain
};

PathOptions utf8_options() {
    PathOptions options;
    options.allow_utf8 = true;
    return options;
}

}  // namespace

TEST_CASE("SMTP paths: the course examples and common forms") {
    // clang-format off
    auto c = GENERATE(values<PathCase>({
        {"<gerard@cnam.fr>",                    "gerard",     "cnam.fr",            "gerard@cnam.fr",            false, false, false},
        {"<\"gerard\"@cnam.fr>",                "gerard",     "cnam.fr",            "gerard@cnam.fr",            true,  false, false},
        {"<Gerard@[136.173.24.11]>",            "Gerard",     "[136.173.24.11]",    "Gerard@[136.173.24.11]",    false, true,  false},
        {"<@hote1,@hote2:usager@hote3>",        "usager",     "hote3",              "usager@hote3",              false, false, true},
        {"<@hote1:usager@hote3>",               "usager",     "hote3",              "usager@hote3",              false, false, true},
        {"<user@[IPv6:::1]>",                   "user",       "[IPv6:::1]",         "user@[IPv6:::1]",           false, true,  false},
        {"<user@[ipv6:2001:DB8::1]>",           "user",       "[IPv6:2001:DB8::1]", "user@[IPv6:2001:DB8::1]",   false, true,  false},
        {"<user@[IPv6:::ffff:192.0.2.1]>",      "user",       "[IPv6:::ffff:192.0.2.1]", "user@[IPv6:::ffff:192.0.2.1]", false, true, false},
        {"<\"a b\"@example.test>",              "a b",        "example.test",       "\"a b\"@example.test",      true,  false, false},
        {"<\"a\\\"b\\\\c\"@example.test>",      "a\"b\\c",    "example.test",       "\"a\\\"b\\\\c\"@example.test", true, false, false},
        {"<\"a\\bc\"@example.test>",            "abc",        "example.test",       "abc@example.test",          true,  false, false},
        {"<\"john..doe\"@example.test>",        "john..doe",  "example.test",       "\"john..doe\"@example.test", true, false, false},
        {"<first.last+tag@Sub.Example.TEST>",   "first.last+tag", "Sub.Example.TEST", "first.last+tag@Sub.Example.TEST", false, false, false},
        {"<!#$%&'*+-/=?^_`{|}~@x-1.test>",      "!#$%&'*+-/=?^_`{|}~", "x-1.test", "!#$%&'*+-/=?^_`{|}~@x-1.test", false, false, false},
        {"<u@localhost>",                       "u",          "localhost",          "u@localhost",               false, false, false},
        {"<u@1.2.3.4.in-addr.test>",            "u",          "1.2.3.4.in-addr.test", "u@1.2.3.4.in-addr.test",  false, false, false},
    }));
    // clang-format on
    CAPTURE(c.text);
    auto path = parse_path(c.text, PathOptions{});
    REQUIRE(path.ok());
    CHECK(path->local_part == c.local_part);
    CHECK(path->domain == c.domain);
    CHECK(path->to_string() == c.canonical);
    CHECK(path->quoted == c.quoted);
    CHECK(path->domain_is_literal == c.literal);
    CHECK(path->had_source_route == c.route);
    CHECK_FALSE(path->is_null);

    // The canonical form parses back to the same mailbox.
    auto again = parse_path("<" + path->to_string() + ">", PathOptions{});
    REQUIRE(again.ok());
    CHECK(again->local_part == path->local_part);
    CHECK(again->domain == path->domain);
}

TEST_CASE("SMTP paths: rejections say why") {
    // clang-format off
    auto c = GENERATE(values<RejectCase>({
        {"gerard@cnam.fr",                 "angle brackets"},
        {"<gerard@cnam.fr",                "angle brackets"},
        {"gerard@cnam.fr>",                "angle brackets"},
        {"",                               "angle brackets"},
        {"<",                              "angle brackets"},
        {"<>",                             "null path"},
        {"<@cnam.fr>",                     "empty local part"},
        {"<\"\"@cnam.fr>",                 "empty local part"},
        {"<gerard>",                       "missing '@domain'"},
        {"<gerard@>",                      "missing domain"},
        {"<.gerard@cnam.fr>",              "local part"},
        {"<gerard.@cnam.fr>",              "local part"},
        {"<ge..rard@cnam.fr>",             "local part"},
        {"<a b@cnam.fr>",                  "invalid character space in local part"},
        {"<a(b)@cnam.fr>",                 "local part"},
        {"<a\"b@cnam.fr>",                 "quote"},
        {"<\"ab@cnam.fr>",                 "unterminated quoted string"},
        {"<\"ab\"c@cnam.fr>",              "after quoted local part"},
        {"<\"ab\\\">",                     "unterminated quoted string"},
        {"<a@b@c>",                        "more than one '@'"},
        {"<a@-cnam.fr>",                   "'-'"},
        {"<a@cnam-.fr>",                   "'-'"},
        {"<a@cnam..fr>",                   "empty label"},
        {"<a@.cnam.fr>",                   "empty label"},
        {"<a@cnam.fr.>",                   "empty label"},
        {"<a@cnam_fr.test>",               "invalid character '_' in domain"},
        {"<a@cn am.fr>",                   "invalid character space in domain"},
        {"<a@[136.173.24]>",               "IPv4"},
        {"<a@[136.173.24.256]>",           "IPv4"},
        {"<a@[1.2.3.4.5]>",                "IPv4"},
        {"<a@[0001.2.3.4]>",               "IPv4"},
        {"<a@[IPv6:1::2::3]>",             "IPv6"},
        {"<a@[IPv6:12345::]>",             "IPv6"},
        {"<a@[IPv6:]>",                    "IPv6"},
        {"<a@[x400:c=fr]>",                "unsupported address literal"},
        {"<a@[]>",                         "empty address literal"},
        {"<a@[1.2.3.4>",                   "missing ']'"},
        {"<a@[1.2.3.4]x>",                 "after address literal"},
        {"<@hote1,hote2:usager@hote3>",    "source route"},
        {"<@hote1,@hote2usager@hote3:x@y>", "source route"},
        {"<@ho_te1:usager@hote3>",         "source route"},
        {"<a@" + std::string(64, 'x') + ".test>", "label longer than 63"},
    }));
    // clang-format on
    CAPTURE(c.text);
    auto path = parse_path(c.text, PathOptions{});
    REQUIRE_FALSE(path.ok());
    CHECK_THAT(path.error(), Catch::Contains(c.reason));
}

TEST_CASE("SMTP paths: CR, LF, NUL and other control characters are refused") {
    auto text = GENERATE(as<std::string>{}, std::string("<a\rb@x.test>"), std::string("<a@x.test\r\nRCPT TO:<b@y>>"),
                         std::string("<a\nb@x.test>"), std::string("<a\0b@x.test>", 12), std::string("<\"a\tb\"@x.test>"),
                         std::string("<a@x\x7f.test>"), std::string("<\"a\x01\"@x.test>"));
    CAPTURE(text);
    auto path = parse_path(text, PathOptions{});
    REQUIRE_FALSE(path.ok());
    CHECK_THAT(path.error(), Catch::Contains("control character"));
}

TEST_CASE("SMTP paths: the error names CR, LF and NUL") {
    CHECK_THAT(parse_path("<a\r@b>", {}).error(), Catch::Contains("CR"));
    CHECK_THAT(parse_path("<a\n@b>", {}).error(), Catch::Contains("LF"));
    CHECK_THAT(parse_path(std::string("<a\0@b>", 6), {}).error(), Catch::Contains("NUL"));
}

TEST_CASE("SMTP paths: the null path and Postmaster") {
    PathOptions options;
    options.allow_null = true;
    auto null = parse_path("<>", options);
    REQUIRE(null.ok());
    CHECK(null->is_null);
    CHECK(null->to_string().empty());
    CHECK(null->normalized().empty());

    CHECK_THAT(parse_path("<>", PathOptions{}).error(), Catch::Contains("null path"));

    CHECK_THAT(parse_path("<Postmaster>", PathOptions{}).error(), Catch::Contains("missing '@domain'"));
    options.allow_postmaster = true;
    auto postmaster = parse_path("<postMASTER>", options);
    REQUIRE(postmaster.ok());
    CHECK(postmaster->local_part == "postMASTER");
    CHECK(postmaster->domain.empty());
    CHECK(postmaster->to_string() == "postMASTER");
    // With a domain it is an ordinary path.
    auto qualified = parse_path("<Postmaster@Example.TEST>", options);
    REQUIRE(qualified.ok());
    CHECK(qualified->normalized() == "Postmaster@example.test");
}

TEST_CASE("SMTP paths: length limits of RFC 5321 §4.5.3.1") {
    const std::string local64(64, 'l');
    const std::string local65(65, 'l');
    CHECK(parse_path("<" + local64 + "@x.test>", {}).ok());
    CHECK_THAT(parse_path("<" + local65 + "@x.test>", {}).error(), Catch::Contains("local part longer than 64"));
    // Quoting counts: 62 characters + 2 quotes = 64 octets on the wire.
    CHECK(parse_path("<\"" + std::string(62, 'q') + "\"@x.test>", {}).ok());
    CHECK_THAT(parse_path("<\"" + std::string(63, 'q') + "\"@x.test>", {}).error(), Catch::Contains("local part"));

    // A 253-octet domain of 63-octet labels: fits a 256-octet path only with a
    // one-letter local part ("<a@" + 253 + ">" = 257), so check the domain alone too.
    const std::string label(63, 'd');
    const std::string domain253 = label + "." + label + "." + label + "." + std::string(61, 'd');
    REQUIRE(domain253.size() == 253);
    CHECK(is_valid_domain(domain253, false));
    const std::string domain256 = domain253 + ".ab";
    CHECK_THAT(check_domain(domain256, false).error(), Catch::Contains("domain longer than 255"));

    const std::string domain250 = label + "." + label + "." + label + "." + std::string(58, 'd');
    REQUIRE(domain250.size() == 250);
    const std::string path256 = "<abc@" + domain250 + ">";
    REQUIRE(path256.size() == 256);
    CHECK(parse_path(path256, {}).ok());
    const std::string path257 = "<abcd@" + domain250 + ">";
    CHECK_THAT(parse_path(path257, {}).error(), Catch::Contains("path longer than 256"));
}

TEST_CASE("SMTP paths: SMTPUTF8 on and off") {
    // clang-format off
    auto c = GENERATE(values<PathCase>({
        {"<gérard@cnam.fr>",            "gérard",    "cnam.fr",          "gérard@cnam.fr",            false, false, false},
        {"<用户@例子.广告>",              "用户",       "例子.广告",         "用户@例子.广告",             false, false, false},
        {"<\"Gérard Florin\"@cnam.fr>", "Gérard Florin", "cnam.fr",      "\"Gérard Florin\"@cnam.fr", true,  false, false},
        {"<user@bücher.example>",       "user",      "bücher.example",   "user@bücher.example",       false, false, false},
        {"<😀@x.test>",                 "😀",        "x.test",           "😀@x.test",                 false, false, false},
    }));
    // clang-format on
    CAPTURE(c.text);
    auto with = parse_path(c.text, utf8_options());
    REQUIRE(with.ok());
    CHECK(with->local_part == c.local_part);
    CHECK(with->domain == c.domain);
    CHECK(with->to_string() == c.canonical);

    auto without = parse_path(c.text, PathOptions{});
    REQUIRE_FALSE(without.ok());
    CHECK_THAT(without.error(), Catch::Contains("requires SMTPUTF8"));
}

TEST_CASE("SMTP paths: malformed UTF-8 is refused even with SMTPUTF8") {
    auto text = GENERATE(as<std::string>{},
                         "<\xc3@x.test>",               // truncated sequence
                         "<\xc0\xaf@x.test>",           // overlong '/'
                         "<\xe0\x80\xaf@x.test>",       // overlong, 3 bytes
                         "<\xed\xa0\x80@x.test>",       // UTF-16 surrogate U+D800
                         "<\xf4\x90\x80\x80@x.test>",   // past U+10FFFF
                         "<\xff@x.test>",               // never valid
                         "<a@\x80.test>",               // stray continuation byte in domain
                         "<\"\xc3\"@x.test>");          // truncated inside quotes
    CAPTURE(text);
    auto path = parse_path(text, utf8_options());
    REQUIRE_FALSE(path.ok());
    CHECK_THAT(path.error(), Catch::Contains("invalid UTF-8"));
}

TEST_CASE("SMTP paths: quoted-pairSMTP escapes only printable US-ASCII") {
    auto path = parse_path("<\"\\é\"@x.test>", utf8_options());
    REQUIRE_FALSE(path.ok());
    CHECK_THAT(path.error(), Catch::Contains("bad escape"));
}

TEST_CASE("SMTP paths: normalized() lowercases the domain only") {
    auto path = parse_path("<John.Doe@Example.TEST>", {});
    REQUIRE(path.ok());
    CHECK(path->normalized() == "John.Doe@example.test");
    CHECK(path->to_string() == "John.Doe@Example.TEST");

    auto literal = parse_path("<a@[IPv6:2001:DB8::A]>", {});
    REQUIRE(literal.ok());
    CHECK(literal->normalized() == "a@[IPv6:2001:db8::a]");

    auto utf8 = parse_path("<A@BÜCHER.example>", utf8_options());
    REQUIRE(utf8.ok());
    CHECK(utf8->normalized() == "A@bÜcher.example");
}

TEST_CASE("ESMTP parameters") {
    auto parameters = parse_esmtp_parameters("SIZE=1000 body=8BITMIME  SMTPUTF8 RET=HDRS ENVID=QQ314159 ");
    REQUIRE(parameters.ok());
    REQUIRE(parameters->size() == 5);
    CHECK((*parameters)[0] == std::pair<std::string, std::string>{"SIZE", "1000"});
    CHECK((*parameters)[1] == std::pair<std::string, std::string>{"BODY", "8BITMIME"});
    CHECK((*parameters)[2] == std::pair<std::string, std::string>{"SMTPUTF8", ""});
    CHECK(find_parameter(*parameters, "size") == std::optional<std::string_view>("1000"));
    CHECK(find_parameter(*parameters, "smtputf8") == std::optional<std::string_view>(""));
    CHECK_FALSE(find_parameter(*parameters, "NOTIFY").has_value());

    auto empty = parse_esmtp_parameters("");
    REQUIRE(empty.ok());
    CHECK(empty->empty());

    auto orcpt = parse_esmtp_parameters("NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+2Bb@x.test AUTH=<>");
    REQUIRE(orcpt.ok());
    CHECK(find_parameter(*orcpt, "ORCPT") == std::optional<std::string_view>("rfc822;a+2Bb@x.test"));
    CHECK(find_parameter(*orcpt, "AUTH") == std::optional<std::string_view>("<>"));
}

TEST_CASE("ESMTP parameters: rejections") {
    // clang-format off
    auto c = GENERATE(values<RejectCase>({
        {"SIZE=",                   "empty value for ESMTP parameter SIZE"},
        {"=100",                    "without a keyword"},
        {"-SIZE=1",                 "keyword"},
        {"SI_ZE=1",                 "keyword"},
        {"SIZE=1=2",                "invalid character '=' in value"},
        {"SIZE=1\tBODY=7BIT",       "TAB"},
        {"BODY=8BIT\r\nRSET",       "CR"},
        {std::string("SIZE=1\0", 7), "NUL"},
        {"ENVID=caf\xc3\xa9",       "byte 0xc3"},
        {"SIZE=1 size=2",           "duplicate ESMTP parameter SIZE"},
    }));
    // clang-format on
    CAPTURE(c.text);
    auto parameters = parse_esmtp_parameters(c.text);
    REQUIRE_FALSE(parameters.ok());
    CHECK_THAT(parameters.error(), Catch::Contains(c.reason));
}

TEST_CASE("ESMTP parameters: the count is bounded") {
    std::string many;
    for (int i = 0; i < 1000; ++i) many += "P" + std::to_string(i) + " ";
    auto parameters = parse_esmtp_parameters(many);
    REQUIRE_FALSE(parameters.ok());
    CHECK_THAT(parameters.error(), Catch::Contains("too many"));
}

TEST_CASE("MAIL/RCPT arguments: path and parameters") {
    PathOptions options;
    options.allow_null = true;
    auto plain = parse_mail_argument("<gerard@cnam.fr>", options);
    REQUIRE(plain.ok());
    CHECK(plain->first.to_string() == "gerard@cnam.fr");
    CHECK(plain->second.empty());

    // One space after the colon is common client behaviour.
    auto spaced = parse_mail_argument(" <gerard@cnam.fr> SIZE=42 BODY=8BITMIME", options);
    REQUIRE(spaced.ok());
    CHECK(spaced->first.domain == "cnam.fr");
    CHECK(find_parameter(spaced->second, "SIZE") == std::optional<std::string_view>("42"));

    auto null = parse_mail_argument("<> RET=HDRS", options);
    REQUIRE(null.ok());
    CHECK(null->first.is_null);

    // A '>' inside a quoted local part does not end the path.
    auto quoted = parse_mail_argument("<\"a>b\"@x.test> NOTIFY=NEVER", options);
    REQUIRE(quoted.ok());
    CHECK(quoted->first.local_part == "a>b");
    CHECK(quoted->first.to_string() == "\"a>b\"@x.test");

    auto route = parse_mail_argument("<@hote1,@hote2:usager@hote3>", options);
    REQUIRE(route.ok());
    CHECK(route->first.to_string() == "usager@hote3");
}

TEST_CASE("MAIL/RCPT arguments: rejections") {
    // clang-format off
    auto c = GENERATE(values<RejectCase>({
        {"",                        "missing path"},
        {" ",                       "missing path"},
        {"  <a@b.test>",            "angle brackets"},
        {"a@b.test",                "angle brackets"},
        {"<a@b.test",               "missing '>'"},
        {"<a@b.test>SIZE=1",        "parameters must follow a space"},
        {"<a@b.test> SIZE=",        "empty value"},
        {"<>",                      "null path"},
        {"<a@b.test>\r\nRCPT TO:<c@d.test>", "CR"},
        {"<" + std::string(100000, 'a') + "@b.test>", "path longer than 256"},
        {"<" + std::string(100000, 'a'), "path longer than 256"},
    }));
    // clang-format on
    CAPTURE(c.text.substr(0, 80));
    auto argument = parse_mail_argument(c.text, PathOptions{});
    REQUIRE_FALSE(argument.ok());
    CHECK_THAT(argument.error(), Catch::Contains(c.reason));
}

TEST_CASE("domain helpers") {
    CHECK(is_valid_domain("cnam.fr", false));
    CHECK(is_valid_domain("a", false));
    CHECK(is_valid_domain("xn--bcher-kva.example", false));
    CHECK_FALSE(is_valid_domain("bücher.example", false));
    CHECK(is_valid_domain("bücher.example", true));
    CHECK_FALSE(is_valid_domain("", false));
    CHECK_FALSE(is_valid_domain("a..b", false));
    CHECK_FALSE(is_valid_domain("a.b.", false));
    CHECK_FALSE(is_valid_domain("-a.b", false));
    CHECK_FALSE(is_valid_domain("a_b", false));
    CHECK_FALSE(is_valid_domain("[1.2.3.4]", false));
    CHECK_THAT(check_domain("bücher.example", false).error(), Catch::Contains("requires SMTPUTF8"));
    CHECK(lowercase_domain("CNAM.Fr") == "cnam.fr");
    CHECK(lowercase_domain("BÜCHER.example") == "bÜcher.example");
    CHECK(lowercase_domain("[IPV6:2001:DB8::1]") == "[IPv6:2001:db8::1]");
    CHECK(lowercase_domain("[136.173.24.11]") == "[136.173.24.11]");
}

namespace {

struct ListCase {
    std::string text;
    const char* display_name;
    const char* local_part;
    const char* domain;
};

}  // namespace

TEST_CASE("RFC 5322 mailboxes: the course examples and more") {
    // clang-format off
    auto c = GENERATE(values<ListCase>({
        {"gerard@cnam.fr",                              "",                "gerard",   "cnam.fr"},
        {"\"gerard\"@cnam.fr",                          "",                "gerard",   "cnam.fr"},
        {"gerard (Gérard Florin) @cnam.fr",             "",                "gerard",   "cnam.fr"},
        {"Gérard Florin <gerard@cnam.fr>",              "Gérard Florin",   "gerard",   "cnam.fr"},
        {"Gerard@[136.173.24.11]",                      "",                "Gerard",   "[136.173.24.11]"},
        {"<@hote1,@hote2:usager@hote3>",                "",                "usager",   "hote3"},
        {"Usager <@hote1,@hote2:usager@hote3>",         "Usager",          "usager",   "hote3"},
        {"<@hote1,,@hote2:usager@hote3>",               "",                "usager",   "hote3"},
        {"John Q. Public <jqp@x.test>",                 "John Q. Public",  "jqp",      "x.test"},
        {"\"Florin, Gérard\" <gerard@cnam.fr>",         "Florin, Gérard",  "gerard",   "cnam.fr"},
        {"\"Joe Q. Public\" <john.q.public@example.com>", "Joe Q. Public", "john.q.public", "example.com"},
        {"Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>", "Pete", "pete", "silly.test"},
        {"(outer (nested (deeper)) comment) a@b.test",  "",                "a",        "b.test"},
        {"  <a@b.test>  ",                              "",                "a",        "b.test"},
        {"a . b @ c . test",                            "",                "a.b",      "c.test"},
        {"\"a b\".c@x.test",                            "",                "a b.c",    "x.test"},
        {"\"a\\\"b\"@x.test",                           "",                "a\"b",     "x.test"},
        {"Mary\r\n Smith\r\n\t<mary@x.test>",           "Mary Smith",      "mary",     "x.test"},
        {"\"folded\r\n name\" <f@x.test>",              "folded name",     "f",        "x.test"},
        {"a@[ IPv6:::1 ]",                              "",                "a",        "[IPv6:::1]"},
        {"用户 <用户@例子.广告>",                         "用户",             "用户",      "例子.广告"},
        {"=?ISO-8859-1?Q?G=E9rard?= <g@x.test>",        "=?ISO-8859-1?Q?G=E9rard?=", "g", "x.test"},
    }));
    // clang-format on
    CAPTURE(c.text);
    auto mailbox = parse_mailbox(c.text);
    REQUIRE(mailbox.ok());
    CHECK(mailbox->display_name == c.display_name);
    CHECK(mailbox->local_part == c.local_part);
    CHECK(mailbox->domain == c.domain);
    CHECK(mailbox->group.empty());

    auto list = parse_address_list(c.text);
    REQUIRE(list.ok());
    REQUIRE(list->size() == 1);
    CHECK(list->front().local_part == c.local_part);
}

TEST_CASE("RFC 5322 address lists and groups") {
    auto list = parse_address_list(
        "gerard@cnam.fr, \"gerard\"@cnam.fr,\r\n gerard (Gérard Florin) @cnam.fr, Gérard Florin <gerard@cnam.fr>,"
        " Gerard@[136.173.24.11], <@hote1,@hote2:usager@hote3>");
    REQUIRE(list.ok());
    REQUIRE(list->size() == 6);
    for (const auto& mailbox : *list) CHECK(mailbox.group.empty());
    CHECK((*list)[3].display_name == "Gérard Florin");
    CHECK((*list)[4].address() == "Gerard@[136.173.24.11]");
    CHECK((*list)[5].address() == "usager@hote3");

    auto friends = parse_address_list("Friends: a@b.test, Carol <c@d.test>;, e@f.test");
    REQUIRE(friends.ok());
    REQUIRE(friends->size() == 3);
    CHECK((*friends)[0].group == "Friends");
    CHECK((*friends)[1].group == "Friends");
    CHECK((*friends)[1].display_name == "Carol");
    CHECK((*friends)[2].group.empty());

    auto quoted_group = parse_address_list("\"My friends\" (the good ones): , x@y.test ,; (done)");
    REQUIRE(quoted_group.ok());
    REQUIRE(quoted_group->size() == 1);
    CHECK(quoted_group->front().group == "My friends");

    auto undisclosed = parse_address_list("undisclosed-recipients:;");
    REQUIRE(undisclosed.ok());
    CHECK(undisclosed->empty());

    auto mixed = parse_address_list("undisclosed-recipients: ; , a@b.test");
    REQUIRE(mixed.ok());
    REQUIRE(mixed->size() == 1);

    // RFC 5322 §4.4 obs-addr-list: empty elements.
    auto sparse = parse_address_list(", a@b.test,, ,c@d.test,");
    REQUIRE(sparse.ok());
    CHECK(sparse->size() == 2);
}

TEST_CASE("Mailbox::address() re-quotes when needed") {
    auto mailbox = parse_mailbox("\"a b\"@x.test");
    REQUIRE(mailbox.ok());
    CHECK(mailbox->address() == "\"a b\"@x.test");
    auto plain = parse_mailbox("\"gerard\"@cnam.fr");
    REQUIRE(plain.ok());
    CHECK(plain->address() == "gerard@cnam.fr");
}

TEST_CASE("RFC 5322: rejections say why") {
    // clang-format off
    auto c = GENERATE(values<RejectCase>({
        {"a@",                          "missing domain"},
        {"@b",                          "missing local part"},
        {"<a@b",                        "missing '>'"},
        {"a@b>",                        "unbalanced '>'"},
        {"a@b@c",                       "more than one '@'"},
        {"<a@b@c>",                     "more than one '@'"},
        {"gerard",                      "missing '@domain'"},
        {"Gérard Florin gerard@cnam.fr", "separated by '.'"},
        {"\"unterminated@x.test",       "unterminated quoted string"},
        {"a@x.test (unterminated",      "unterminated comment"},
        {"a@x.test)",                   "unbalanced ')'"},
        {"a@[1.2.3.4",                  "unterminated domain literal"},
        {"a@1.2.3.4]",                  "unbalanced ']'"},
        {"a\\b@x.test",                 "'\\'"},
        {".a@x.test",                   "local part"},
        {"a.@x.test",                   "local part"},
        {"a..b@x.test",                 "local part"},
        {"a@x..test",                   "empty label"},
        {"a@x.test.",                   "empty label"},
        {"a@\"x\".test",                "quoted string not allowed in domain"},
        {"<>",                          "empty address"},
        {"",                            "no address"},
        {" , ,",                        "no address"},
        {"a@b c@d",                     "expected ','"},
        {"Friends: a@b.test",           "missing ';'"},
        {"Outer: Inner: a@b;;",         "group inside a group"},
        {": a@b;",                      "group without a name"},
        {"<@hote1,hote2:usager@hote3>", "route"},
        {"<@hote1 usager@hote3>",       "route"},
        {"a@x.test\r\nBcc: victim@y.test", "CR"},
        {"a@x.test\nBcc: victim@y.test",  "LF"},
        {"a@x.test\r",                  "CR"},
        {std::string("a\0@x.test", 9),  "NUL"},
        {"a@x\x01.test",                "control character"},
        {"\"a\x7f\"@x.test",            "control character"},
        {"\xc3@x.test",                 "invalid UTF-8"},
        {"Bad \xed\xa0\x80 <a@x.test>", "invalid UTF-8"},
        {"(\xff) a@x.test",             "invalid UTF-8"},
        {"\"a\\\x01\"@x.test",          "bad escape"},
    }));
    // clang-format on
    CAPTURE(c.text);
    auto list = parse_address_list(c.text);
    REQUIRE_FALSE(list.ok());
    CHECK_THAT(list.error(), Catch::Contains(c.reason));
}

TEST_CASE("parse_mailbox wants exactly one mailbox") {
    CHECK_THAT(parse_mailbox("a@b.test, c@d.test").error(), Catch::Contains("exactly one mailbox"));
    CHECK_THAT(parse_mailbox("G: a@b.test;").error(), Catch::Contains("exactly one mailbox"));
    CHECK_THAT(parse_mailbox("undisclosed-recipients:;").error(), Catch::Contains("exactly one mailbox"));
}

TEST_CASE("RFC 5322: comment nesting is bounded") {
    const std::string depth32 = std::string(32, '(') + std::string(32, ')') + " a@b.test";
    auto ok = parse_address_list(depth32);
    REQUIRE(ok.ok());
    CHECK(ok->front().address() == "a@b.test");

    const std::string depth33 = std::string(33, '(') + std::string(33, ')') + " a@b.test";
    CHECK_THAT(parse_address_list(depth33).error(), Catch::Contains("nested deeper than 32"));

    // 50,000 open parentheses: refused at the depth limit, no recursion, no crash.
    const std::string deep = std::string(50000, '(') + "a@b.test";
    CHECK_THAT(parse_address_list(deep).error(), Catch::Contains("nested deeper than 32"));
}

TEST_CASE("hostile sizes are refused without crashing") {
    const std::string huge(100000, 'a');
    CHECK_THAT(parse_address_list(huge + "@x.test").error(), Catch::Contains("longer than 65536"));
    CHECK_THAT(parse_mailbox(huge).error(), Catch::Contains("longer than 65536"));
    CHECK_THAT(parse_path("<" + huge + "@x.test>", {}).error(), Catch::Contains("path longer than 256"));
    CHECK_THAT(parse_path(huge, {}).error(), Catch::Contains("path longer than 256"));
    CHECK_FALSE(is_valid_domain(huge, true));

    // Just under the header limit: parsed in linear time.
    std::string many;
    while (many.size() < max_header_value_length - 20) many += "a@b.test,";
    auto list = parse_address_list(many);
    REQUIRE(list.ok());
    CHECK(list->size() == many.size() / 9);

    // Every byte value alone, and a run of each: an error or a result, never a crash.
    for (int byte = 0; byte < 256; ++byte) {
        const std::string one(1, static_cast<char>(byte));
        (void)parse_address_list(one);
        (void)parse_address_list(std::string(1000, static_cast<char>(byte)));
        (void)parse_path("<" + one + "@x.test>", utf8_options());
        (void)parse_mail_argument(std::string(300, static_cast<char>(byte)), utf8_options());
    }
    SUCCEED("no crash");
}
