"""The reply splitter over client layouts in many languages, false cuts, and HTML quote containers (no servers).

The sample texts are written here, in the layouts of the clients named; none is copied from the corpus
that tests/test_reply_corpus.py scores.
"""
from __future__ import annotations

from email.message import EmailMessage

import pytest

from maildesk.parsers import parse_mail
from maildesk.parsers.commands import Vocabulary, parse_reply_commands
from maildesk.parsers.html import html_to_text
from maildesk.parsers.reply import ReplyParts, quote_header_end, split_reply

VOCAB = Vocabulary.build()

# (layout, reply text, expected new text).  Every quoted part holds a command that must not count.
LAYOUTS = [
    # -- Chinese clients --------------------------------------------------------------------------------
    ("qq mail", "＃执行　今晚操作\n\n------------------&nbsp;原始邮件&nbsp;------------------\n".replace("&nbsp;", " ")
     + "发件人: \"IT 服务台\"<support@example.com>;\n发送时间: 2026年11月24日(星期二) 上午9:31\n"
       "收件人: \"张三\"<zs@qq.example>;\n主题: [TS-000021] 邮箱\n\n回复 #关闭 归档。", "＃执行　今晚操作"),
    ("foxmail", "#resolve 换了硒鼓\n\n------------------ Original ------------------\nFrom:  \"IT\"<support@example.com>;\n"
                "Date:  Tue, Nov 24, 2026 09:31 AM\nTo:  \"zs\"<zs@foxmail.example>;\n\n#close", "#resolve 换了硒鼓"),
    ("netease 163", "同意\n\n在 2026-11-24 10:02:00，\"IT 服务台\" <support@example.com> 写道：\n>不同意请回复 #close",
     "同意"),
    ("netease mail master", "好的，谢谢\n\n---- 回复的原邮件 ----\n| 发件人 | IT 服务台<support@example.com> |\n"
                            "| 日期 | 2026年11月24日 10:02 |\n#close", "好的，谢谢"),
    ("outlook zh", "#方案：调整配额\n\n________________________________\n发件人: IT 服务台 <support@example.com>\n"
                   "发送时间: 2026年11月23日 10:02\n收件人: Alice\n主题: [TS-000021] 邮箱\n\n处理完成后回复 #解决",
     "#方案：调整配额"),
    ("outlook zh-Hant", "已處理\n\n寄件者: IT 服務台 <support@example.com>\n寄件日期: 2026年11月23日 上午 10:02\n"
                        "收件者: Alice\n主旨: [TS-000021] 郵箱\n\n#close", "已處理"),
    ("gmail zh", "#诊断 先看日志\n\nIT 服务台 <support@example.com> 于2026年11月24日周二 10:02写道：\n\n> #解决",
     "#诊断 先看日志"),
    ("apple mail zh", "可以\n\n发自我的iPhone\n\n> 2026年11月24日 10:02，IT 服务台 <support@example.com> 写道：\n>\n> #close",
     "可以"),
    ("apple mail zh unprefixed header", "可以\n\n2026年11月24日 10:02，IT 服务台 <support@example.com> 写道：\n\n> #close",
     "可以"),
    # -- localised Outlook header blocks ------------------------------------------------------------------
    ("outlook nl", "Dank je.\n\nVan: Servicedesk [mailto:support@example.com]\n"
                   "Verzonden: maandag 5 december 2026 17:00\n"
                   "Aan: klant@example.nl\nOnderwerp: printer\n\n#close", "Dank je."),
    ("outlook it", "Grazie.\n\nDa: Servicedesk<mailto:support@example.com>\nInviato: martedì 3 gennaio 2026 10:35\n"
                   "A: cliente@example.it\nOggetto: stampante\n\n#close", "Grazie."),
    ("outlook fr", "Merci.\n\nDe : Servicedesk<mailto:support@example.com>\nEnvoyé le :jeudi 15 décembre 2026 09:35\n"
                   "À : client@example.fr\nObjet : imprimante\n\n#close", "Merci."),
    ("outlook sv", "Tack.\n\nFrån: Servicedesk [mailto:support@example.com]\nSkickat: den 5 juni 2026 12:22\n"
                   "Till: kund@example.se\nÄmne: skrivare\n\n#close", "Tack."),
    ("outlook ru", "Спасибо.\n\nОт: Servicedesk (mailto:support@example.com)\n"
                   "Отправлено: четверг, 26 июня 2026 г. 15:05\n"
                   "Кому: Клиент\n\n#close", "Спасибо."),
    ("outlook de", "Danke.\n\n-----Ursprüngliche Nachricht-----\nVon: Servicedesk <support@example.com>\n"
                   "Gesendet: Montag, 23. November 2026 10:02\nAn: Kunde\nBetreff: Drucker\n\n#close", "Danke."),
    ("outlook es", "Gracias.\n\nDe: Servicedesk <support@example.com>\n"
                   "Enviado el: lunes, 23 de noviembre de 2026 10:02\n"
                   "Para: cliente\nAsunto: impresora\n\n#close", "Gracias."),
    ("outlook pt", "Obrigado.\n\nDe: Servicedesk <support@example.com>\n"
                   "Enviada em: segunda-feira, 23 de novembro de 2026\n"
                   "Para: cliente\nAssunto: impressora\n\n#close", "Obrigado."),
    ("outlook pl", "Dziękuję.\n\nOd: Servicedesk <support@example.com>\n"
                   "Wysłano: poniedziałek, 23 listopada 2026 10:02\n"
                   "Do: klient\nTemat: drukarka\n\n#close", "Dziękuję."),
    ("outlook ja", "ありがとうございます。\n\n差出人: Servicedesk <support@example.com>\n送信日時: 2026年11月24日 10:02\n"
                   "宛先: 顧客\n件名: プリンター\n\n#close", "ありがとうございます。"),
    ("outlook ko", "감사합니다.\n\n보낸 사람: Servicedesk <support@example.com>\n보낸 날짜: 2026년 11월 24일 화요일 오전 10:02\n"
                   "받는 사람: 고객\n제목: 프린터\n\n#close", "감사합니다."),
    ("outlook tr", "Teşekkürler.\n\nKimden: Servicedesk <support@example.com>\nGönderildi: 24 Kasım 2026 Salı 10:02\n"
                   "Kime: müşteri\nKonu: yazıcı\n\n#close", "Teşekkürler."),
    ("outlook for mac", "Works now.\n\nFrom: Service Desk <support@example.com>\n"
                        "Reply-To: Service Desk <support+1@example.com>\n"
                        "Date: Monday, 23 November 2026 at 10:02\nTo: Bob <bob@example.org>\nSubject: printer\n"
                        "\n#close",
     "Works now."),
    ("outlook wrapped from", "Thanks.\n\nFrom: Human Resources\n"
                             "<a-really-long-automated-address+12345@hr.example.com>\n"
                             "Sent: Monday, 23 November 2026 10:02\nTo: Bob\nSubject: forms\n\n#close", "Thanks."),
    ("outlook bold markers", "ok\n\n*From:* Desk <support@example.com>\n*Sent:* Monday, 23 November 2026\n*To:* Bob\n"
                             "*Subject:* x\n\n#close", "ok"),
    ("outlook on one line", "ok\nFrom: Desk <support@example.com> Sent: Monday, 23 Nov 2026 To: Bob Subject: [TS-1] x\n"
                            "#close", "ok"),
    ("hotmail date first", "fine\n\nDate: Thu, 26 Nov 2026 13:53:45 +0400\nSubject: printer\n"
                           "From: support@example.com\n"
                           "To: bob@example.org\n\n#close", "fine"),
    ("outlook mobile", "not fixed\n\nGet Outlook for iOS\n________________________________\nFrom: Desk\n#close",
     "not fixed"),
    ("yahoo indented fr", "bonjour,\nmerci\n\n      De : Desk <support@example.com>\n À : moi <me@example.fr>\n"
                          " Envoyé le : Mercredi 30 novembre 2026 10h30\n Objet : Re: imprimante\n\n#close",
     "bonjour,\nmerci"),
    # -- attributions in other languages ------------------------------------------------------------------
    ("gmail it", "Va bene.\n\nIl giorno lun 23 nov 2026 alle ore 10:02 Desk <support@example.com> ha scritto:\n"
                 "\n> #close",
     "Va bene."),
    ("gmail de", "Passt.\n\nDesk <support@example.com> schrieb am Mo., 23. Nov. 2026 um 10:02 Uhr:\n\n> #close",
     "Passt."),
    ("gmail de wrapped", "Passt.\n\nAm Mo., 23. Nov. 2026 um 10:02 Uhr schrieb Service Desk <\n"
                         "support@example.com>:\n\n> #close",
     "Passt."),
    ("thunderbird de", "Danke.\n\nAm 23.11.2026 um 10:02 schrieb Service Desk:\n> #close", "Danke."),
    ("gmail sv", "Tack.\n\nmån 23 nov. 2026 kl. 10:02 skrev Desk <support@example.com>:\n\n> #close", "Tack."),
    ("apple da", "Tak.\n\n> Den 23. nov. 2026 kl. 10.02 skrev Desk <support@example.com>:\n>\n> #close", "Tak."),
    ("gmail pl", "Dzięki.\n\npon., 23 lis 2026 o 10:02 Desk <support@example.com> napisał(a):\n\n> #close", "Dzięki."),
    ("webmail pl", "Dzięki.\n\nW dniu 2026-11-23 10:02:00 użytkownik Desk <support@example.com> napisał:\n\n#close",
     "Dzięki."),
    ("gmail pt", "Obrigado.\n\nEm seg., 23 de nov. de 2026 às 10:02, Desk <\nsupport@example.com> escreveu:\n\n"
                 "> #close",
     "Obrigado."),
    ("apple ja", "了解です。\n\n2026/11/24 10:02、Desk <support@example.com>のメッセージ:\n\n> #close", "了解です。"),
    ("apple ko", "확인했습니다.\n\n2026. 11. 24. 오전 10:02, Desk <support@example.com> 작성:\n\n> #close", "확인했습니다."),
    ("gmail ru", "Спасибо.\n\nпн, 23 нояб. 2026 г. в 10:02, Desk <support@example.com>:\n\n> #close", "Спасибо."),
    ("android ru", "Спасибо.\n\n23 нояб. 2026 г. 10:02 пользователь \"Desk\" <support@example.com> написал:\n\n"
                   "> #close",
     "Спасибо."),
    ("mail.ru ru", "Спасибо.\n\nПонедельник, 23 ноября 2026, 10:02 +03:00 от Desk <support@example.com>:\n\n#close",
     "Спасибо."),
    ("yandex", "Спасибо.\n\n23.11.2026, 10:02, \"Desk\" <support@example.com>:\n#close", "Спасибо."),
    ("yandex пишет", "Ок.\n\n23.11.2026, 10:02, Desk пишет:\n> #close", "Ок."),
    ("gmail fi", "Kiitos.\n\nma 23. marrask. 2026 klo 10.02 Desk\n<support@example.com> kirjoitti:\n\n"
                 "> #close", "Kiitos."),
    ("thunderbird hu", "Köszönöm.\n\n2026.11.23. 10:02 keltezéssel, \"Desk\" írta:\n> #close", "Köszönöm."),
    ("gmail nl wrapped", "Bedankt.\n\nOp 23 nov. 2026 10:02 schreef \"Desk\" <support@example.com> het\n"
                         "volgende geschreven:\n\n"
                         "> #close", "Bedankt."),
    ("apple en three lines", "Thanks.\n\nOn Nov 23, 2026,\nat 10:02,\nDesk <support@example.com> wrote:\n\n> #close",
     "Thanks."),
    ("thunderbird name only", "Thanks.\n\nBob Smith wrote:\n> #close\n> more", "Thanks."),
    ("old gmail", "Thanks.\n\n2026-11-23 10:02 GMT+01:00 Desk <support@example.com>:\n\n#close", "Thanks."),
    ("old gmail no colon", "Thanks.\n\n2026/11/23 Desk <support@example.com>\n\n| #close", "Thanks."),
    ("zimbra fr", "Merci.\n\n----- Mail original -----\nDe: \"Desk\" <support@example.com>\nÀ: moi@example.fr\n"
                  "Envoyé: Lundi 23 Novembre 2026 10:02:00\nObjet: imprimante\n\n#close", "Merci."),
    ("zimbra dash attribution", "Merci.\n\n- Le 2026-11-23 10:02, Desk a écrit :\n> #close", "Merci."),
    ("zoho", "Thanks.\n\n---- On Mon, 23 Nov 2026 10:02:00 +0530 Desk <support@example.com> wrote ----\n\n#close",
     "Thanks."),
    ("samsung fr", "Merci.\n\n-------- Message d'origine --------\nDe : Desk <support@example.com>\n"
                   "Date : 23/11/2026 10:02 (GMT+01:00)\nÀ : moi@example.fr\n\n#close", "Merci."),
    ("windows phone es", "Gracias.\n\n-----Mensaje original-----\nDe: Desk\n#close", "Gracias."),
    ("apple forward", "FYI\n\nBegin forwarded message:\n\nFrom: Desk <support@example.com>\nSubject: x\n"
                      "Date: 23 November 2026 at 10:02\n\n#close", "FYI"),
    # -- signatures ---------------------------------------------------------------------------------------
    ("iphone signature", "5\n\nSent from my iPhone\n\nOn 23 Nov 2026 Desk wrote:\n> rate 1-5", "5"),
    ("iphone zh signature", "4分，处理得挺快\n\n发自我的iPhone", "4分，处理得挺快"),
    ("german device", "Geht wieder.\n\nVon meinem iPhone gesendet", "Geht wieder."),
    ("french device", "Ça marche.\n\nEnvoyé de mon iPad", "Ça marche."),
    ("android model", "ok\n\nSent from my Samsung Galaxy S23 Ultra", "ok"),
    ("outlook android link", "Geht.\n\nGesendet von Outlook für Android<https://aka.ms/ghei36>\n\n"
                             "Hallo, #close", "Geht."),
    ("netease master", "收到\n\n发自网易邮箱大师", "收到"),
    ("dash signature", "#resolve replaced cable\n-- \nAlice Wang\nIT, ext. 402 #close", "#resolve replaced cable"),
    # -- bottom-posting and inline answers ----------------------------------------------------------------
    ("bottom post", "On Mon, 23 Nov 2026 at 09:13, Desk <support@example.com> wrote:\n> Reply #close to close.\n\n"
                    "Still broken, please keep it open.", "Still broken, please keep it open."),
    ("inline answers", "On Mon, 23 Nov 2026, Desk <support@example.com> wrote:\n> Is the printer on?\n\nYes.\n\n"
                       "> Reply #close if fixed.\n\nNot fixed yet.\n\n-- \nBob", "Yes.\n\nNot fixed yet."),
    ("text above and between", "Short answer first.\nOn Mon, 23 Nov 2026 at 09:13, Desk wrote:\n> q1\n> #close\n\n"
                               "Longer answer below.", "Short answer first.\n\nLonger answer below."),
    ("inline > quotes only", "> #close\nmy answer\n> #resolve", "my answer"),
    ("re-wrapped quote line", "ok\n\nOn Mon, 23 Nov 2026, Desk <support@example.com> wrote:\n"
                              "> This line was long enough that the client wrapped it and lost the\n"
                              "marker on the rest\n> #close", "ok"),
    ("list footer after quote", "ok\n\nOn Mon, 23 Nov 2026, Desk wrote:\n> #close\n> q\n\n_______________\n"
                                "users mailing list\nusers@lists.example.org", "ok"),
    # -- false cuts ---------------------------------------------------------------------------------------
    ("dashed table rule", "Service  Expires\n--------------------\nmail     2026-12-01\nvpn      2027-01-01\n\n"
                          "Please renew both.", None),
    ("sent from my desk", "Sent from my desk, which is easier than my phone.\nPlease call back.", None),
    ("comparison lines", "Affected:\n>= 5 users\n> 50% CPU on the server\nPlease check.", None),
    ("single > inside a paragraph", "The rule reads\n> all traffic to port 25\nand it blocks us.", None),
    ("from/to in the text", "Please move the printer\nFrom: room 301\nTo: room 405\nThanks.", None),
    ("time and address with a colon", "Call me at 10:30 or mail bob@example.com:\nI am in all day.", None),
    ("wrote in a sentence", "I wrote to the vendor yesterday and they wrote:\nthe part ships on Monday.", None),
    ("verb at the end of a sentence", "I tried the 2 steps as you wrote:\n1. restart\n2. log in again", None),
    ("opener and verb in a sentence", "On Monday I wrote 3 tickets:\n- printer\n- VPN", None),
    ("no quote", "just text\nsecond line", None),
]


@pytest.mark.parametrize("layout, text, new", LAYOUTS, ids=[layout for layout, _, _ in LAYOUTS])
def test_split_reply(layout, text, new):
    assert split_reply(text).new == (text if new is None else new)


@pytest.mark.parametrize("layout, text, new", LAYOUTS, ids=[layout for layout, _, _ in LAYOUTS])
def test_quoted_commands_never_count(layout, text, new):
    commands = parse_reply_commands(split_reply(text).new, "", VOCAB)
    assert all(c.name != "close" for c in commands)


def test_parts_keep_every_line():
    text = ("Yes.\n\nSent from my iPhone\n\nOn Mon, 23 Nov 2026, Desk <support@example.com> wrote:\n"
            "> Reply #close to close.")
    parts = split_reply(text)
    assert isinstance(parts, ReplyParts)
    assert parts.new == "Yes."
    assert parts.signature == "Sent from my iPhone"
    assert parts.quoted == "On Mon, 23 Nov 2026, Desk <support@example.com> wrote:\n> Reply #close to close."


def test_bare_quote_goes_to_quoted_whole():
    text = "ok\n\n-----Original Message-----\nFrom: Desk\nSent: Monday\n\nold text\n#close"
    parts = split_reply(text)
    assert parts.new == "ok"
    assert parts.quoted == "-----Original Message-----\nFrom: Desk\nSent: Monday\n\nold text\n#close"


def test_quote_header_end():
    assert quote_header_end(["On Mon, 23 Nov 2026, Desk <support@example.com> wrote:", "", "body"]) == 1
    assert quote_header_end(["From: Desk", "Sent: Monday", "To: Bob", "", "body"]) == 3
    assert quote_header_end(["Begin forwarded message:", "", "From: Desk", "Date: Monday", "", "body"]) == 4
    assert quote_header_end(["Hello Bob,", "body"]) == 0
    assert quote_header_end([]) == 0


# -- HTML quote containers -------------------------------------------------------------------------------

HTML = [
    ("gmail", '<div dir="ltr">Fixed, thanks.</div><br><div class="gmail_quote gmail_quote_container">'
              '<div dir="ltr" class="gmail_attr">On Mon, 23 Nov 2026 at 10:02, Desk &lt;<a href="mailto:support@'
              'example.com">support@example.com</a>&gt; wrote:<br></div><blockquote class="gmail_quote" style="margin:0'
              ' 0 0 .8ex;border-left:1px #ccc solid;padding-left:1ex"><div>Reply #close to close.</div>'
              '</blockquote></div>',
     "Fixed, thanks.\n\nOn Mon, 23 Nov 2026 at 10:02, Desk <support@example.com> wrote:\n> Reply #close to close.",
     "Fixed, thanks."),
    ("gmail zh", '<div>好了</div><div class="gmail_quote"><div class="gmail_attr">IT 服务台 &lt;support@example.com&gt; '
                 '于2026年11月24日周二 10:02写道：<br></div><blockquote class="gmail_quote"><div>#关闭</div>'
                 '</blockquote></div>',
     "好了\nIT 服务台 <support@example.com> 于2026年11月24日周二 10:02写道：\n> #关闭", "好了"),
    ("apple mail", 'Yes<br><div><blockquote type="cite"><div>On 23 Nov 2026, at 10:02, Desk &lt;support@example.com&gt;'
                   ' wrote:</div><br><div>#close</div><div>line two</div></blockquote></div>',
     "Yes\nOn 23 Nov 2026, at 10:02, Desk <support@example.com> wrote:\n\n> #close\n> line two", "Yes"),
    ("thunderbird", '<p>Done.</p><div class="moz-cite-prefix">On 23.11.2026 10:02, Desk wrote:<br></div>'
                    '<blockquote type="cite" cite="mid:x@example.com"><p>#close</p><p>two</p></blockquote>',
     "Done.\nOn 23.11.2026 10:02, Desk wrote:\n> #close\n> two", "Done."),
    ("yahoo", '<div>ok</div><div class="ydp1a2b3cyahoo_quoted" id="ydp1a2b3cyahoo_quoted_123"><div>On Monday, '
              'November 23, 2026, 10:02 AM GMT+8, Desk wrote:</div><div><br></div><div>#close</div></div>',
     "ok\nOn Monday, November 23, 2026, 10:02 AM GMT+8, Desk wrote:\n\n> #close", "ok"),
    ("netease 163", '回复内容<br><br>At 2026-11-24 10:02:00, "IT" &lt;support@example.com&gt; wrote:<br>'
                    '<blockquote id="isReplyContent" style="PADDING-LEFT: 1ex; MARGIN: 0px 0px 0px 0.8ex; '
                    'BORDER-LEFT: #ccc 1px solid"><div>#close</div></blockquote>',
     "回复内容\n\nAt 2026-11-24 10:02:00, \"IT\" <support@example.com> wrote:\n> #close", "回复内容"),
    ("netease mail master", '<div>已经搞定了</div><div class="J-reply ntes-mailmaster-quote" style="padding-top: 1px">'
                            '<div>---- 回复的原邮件 ----</div><div><table><tr><td>发件人</td><td>IT</td></tr></table>'
                            '</div><div>#close</div></div>',
     "已经搞定了\n---- 回复的原邮件 ----\n> 发件人 IT\n> #close", "已经搞定了"),
    ("outlook web", '<div>好的</div><div id="appendonsend"></div><hr style="display:inline-block;width:98%">'
                    '<div id="divRplyFwdMsg" dir="ltr"><font><b>发件人:</b> IT 服务台 &lt;support@example.com&gt;<br>'
                    '<b>发送时间:</b> 2026年11月24日 10:02<br><b>主题:</b> [TS-1] 打印机</font><div>&nbsp;</div></div>'
                    '<div>回复 #关闭 归档</div>',
     "好的\n发件人: IT 服务台 <support@example.com>\n发送时间: 2026年11月24日 10:02\n主题: [TS-1] 打印机\n\n> 回复 #关闭 归档",
     "好的"),
    ("outlook desktop", '<div class="WordSection1"><p class="MsoNormal">Thanks</p><div><div style="border:none;'
                        'border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0cm 0cm 0cm"><p class="MsoNormal"><b>From:</b> '
                        'Desk<br><b>Sent:</b> Monday, November 23, 2026 10:02 AM<br><b>To:</b> Bob<br><b>Subject:</b>'
                        ' x</p></div></div><p class="MsoNormal">#close</p></div>',
     "Thanks\nFrom: Desk\nSent: Monday, November 23, 2026 10:02 AM\nTo: Bob\nSubject: x\n> #close", "Thanks"),
]


@pytest.mark.parametrize("client, html, text, new", HTML, ids=[c for c, _, _, _ in HTML])
def test_html_quote_containers(client, html, text, new):
    assert html_to_text(html) == text
    assert split_reply(html_to_text(html)).new == new


@pytest.mark.parametrize("html, text", [
    ("<p>a</p><blockquote>indented, not quoted</blockquote><p>b</p>", "a\nindented, not quoted\nb"),
    ('<blockquote style="margin:0 0 0 40px;border:none;padding:0px">indent</blockquote>', "indent"),
    ('<div class="gmail_signature">-- <br>Bob</div>', "--\nBob"),
])
def test_html_without_quote_containers_is_not_prefixed(html, text):
    assert html_to_text(html) == text


def test_html_nested_quotes_and_blank_lines():
    html = ('new<blockquote type="cite">one<br><br>two<blockquote type="cite">three</blockquote></blockquote>'
            '<p>after</p>')
    assert html_to_text(html) == "new\n> one\n>\n> two\n> > three\nafter"
    assert split_reply(html_to_text(html)).new == "new\n\nafter"


def test_html_only_mail_keeps_quote_marks_through_parse_mail():
    msg = EmailMessage()
    msg["From"] = "bob@customer.example"
    msg["To"] = "support@example.com"
    msg["Subject"] = "Re: [TS-000021] printer"
    msg.set_content('<div>Still broken.</div><div class="gmail_quote"><div class="gmail_attr">On Mon, 23 Nov 2026, '
                    'Desk &lt;support@example.com&gt; wrote:</div><blockquote class="gmail_quote">Reply #close to '
                    'close.</blockquote></div>', subtype="html")
    text = parse_mail(msg.as_bytes()).text
    assert "> Reply #close to close." in text.splitlines()
    assert split_reply(text).new == "Still broken."
    assert not parse_reply_commands(split_reply(text).new, "", VOCAB)


def test_private_use_characters_in_the_mail_do_not_mark_quotes():
    # html_to_text marks quote depth with private-use characters; the same characters in a mail are data.
    assert html_to_text("a\ue000\ue101b") == "a\ue101b"
    assert html_to_text('x\ue000\ue103y<blockquote type="cite">q</blockquote>') == "x\ue103y\n> q"


# A whole short line that is a device phrase starts the signature, whatever the language and model; a sentence
# that only begins like one stays text.
DEVICE_LINES = [
    ("Sent from my iPhone 15 Pro", True),
    ("发自我的iPhone", True),
    ("iPhoneから送信", True),
    ("iPhone에서 보냄", True),
    ("从我的 iPhone 发送", True),
    ("Von meinem Samsung Galaxy S23 gesendet", True),
    ("Trimis de pe iPhone-ul meu", True),
    ("Sent from my cell phone.", True),
    ("Enviado desde mi móvil Xiaomi", True),
    ("Sent from my car", False),
    ("Sent from myiPhone", False),
    ("Sent from my iPhone, so excuse the typos", False),
    ("Sent from my iPhone 15 Pro Max in the train", False),
]


@pytest.mark.parametrize("line, is_signature", DEVICE_LINES, ids=[line for line, _ in DEVICE_LINES])
def test_device_line_starts_the_signature(line, is_signature):
    parts = split_reply(f"Printer works again.\n\n{line}")
    assert parts.signature == (line if is_signature else "")
    assert parts.new == ("Printer works again." if is_signature else f"Printer works again.\n\n{line}")
