"""The words mail clients put around a quoted message, per language, as data.

``parsers/reply.py`` compiles its patterns from these tables when it is
imported, so supporting another language or client means adding rows here,
not code there.  Every entry is plain text (no regular expressions): it is
escaped when compiled, and matched case-insensitively after NFKC
normalisation (so full-width ``：`` and ``＃`` are the ASCII ones).

The tables:

* ``HEADER_FIELDS``: the field names of a quoted header block ("From:",
  "Sent:" ... as Outlook, Windows Mail, Yahoo, Zimbra, QQ, Foxmail write
  them), per language and per role.  A block needs two fields, one of them a
  sender or a date, so one "To:" in the text is never taken for a quote.
* ``ATTRIBUTION_VERBS``: the verb of an attribution line ("On <date>, <name>
  wrote:", "<name> 于<date>写道：", "<date>、<name> のメッセージ:").
* ``ATTRIBUTION_OPENERS``: the first word of such a line ("On", "Am", "Le",
  "在" ...), which tells the start of a wrapped attribution from the text
  above it.
* ``SEPARATORS``: the phrases of the rule above a quoted or forwarded mail
  ("-----Original Message-----", "---- 回复的原邮件 ----", "Begin forwarded
  message:").
* ``DEVICE_SIGNATURES``: the one-line phrases phones and apps append ("Sent
  from my iPhone", "发自我的iPhone", "Get Outlook for iOS").  ``{device}`` in a
  phrase stands for one of ``DEVICES`` (optionally followed by a model name,
  "iPhone 15 Pro"); a line is a signature only when the whole short line is
  such a phrase, so "Sent from my desk, which is easier" stays text.
"""
from __future__ import annotations

# Roles of a header field.  "from" and "date" are the anchors of a header block.
FROM, DATE, TO, CC, SUBJECT, REPLY_TO = "from", "date", "to", "cc", "subject", "reply-to"

HEADER_FIELDS: dict[str, dict[str, tuple[str, ...]]] = {
    "en": {FROM: ("From",), DATE: ("Sent", "Date", "Sent on"), TO: ("To",), CC: ("Cc", "Bcc"),
           SUBJECT: ("Subject",), REPLY_TO: ("Reply-To", "Reply To")},
    "zh-Hans": {FROM: ("发件人", "发信人", "来自"), DATE: ("发送时间", "发送日期", "日期", "时间"),
                TO: ("收件人",), CC: ("抄送", "抄送人"), SUBJECT: ("主题",), REPLY_TO: ("回复至",)},
    "zh-Hant": {FROM: ("寄件者", "寄件人", "發件人"), DATE: ("寄件日期", "傳送時間", "傳送日期", "發送時間", "日期"),
                TO: ("收件者", "收件人"), CC: ("副本", "抄送"), SUBJECT: ("主旨", "主題")},
    "de": {FROM: ("Von",), DATE: ("Gesendet", "Datum", "Gesendet am"), TO: ("An",), CC: ("Cc", "Kopie"),
           SUBJECT: ("Betreff",), REPLY_TO: ("Antwort an",)},
    "fr": {FROM: ("De", "Expéditeur"), DATE: ("Envoyé", "Envoyé le", "Date", "Message du"),
           TO: ("À", "A", "Pour", "Destinataire"), CC: ("Cc", "Copie à", "Copie"), SUBJECT: ("Objet", "Sujet"),
           REPLY_TO: ("Répondre à",)},
    "es": {FROM: ("De", "Remitente"), DATE: ("Enviado", "Enviado el", "Fecha"), TO: ("Para",),
           CC: ("Cc", "CC"), SUBJECT: ("Asunto",), REPLY_TO: ("Responder a",)},
    "it": {FROM: ("Da", "Mittente"), DATE: ("Inviato", "Data", "Inviato il"), TO: ("A", "Destinatario"),
           CC: ("Cc",), SUBJECT: ("Oggetto",), REPLY_TO: ("Risposta", "Rispondi a")},
    "pt": {FROM: ("De", "Remetente"), DATE: ("Enviado", "Enviada", "Enviada em", "Enviado em", "Data"),
           TO: ("Para",), CC: ("Cc",), SUBJECT: ("Assunto",), REPLY_TO: ("Responder a",)},
    "nl": {FROM: ("Van", "Afzender"), DATE: ("Verzonden", "Datum", "Verstuurd"), TO: ("Aan",), CC: ("Cc",),
           SUBJECT: ("Onderwerp",), REPLY_TO: ("Antwoord aan",)},
    "sv": {FROM: ("Från",), DATE: ("Skickat", "Datum", "Skickades"), TO: ("Till",), CC: ("Kopia", "Cc"),
           SUBJECT: ("Ämne",), REPLY_TO: ("Svara till",)},
    "da": {FROM: ("Fra",), DATE: ("Sendt", "Dato"), TO: ("Til",), CC: ("Cc", "Kopi"), SUBJECT: ("Emne",),
           REPLY_TO: ("Svar til",)},
    "no": {FROM: ("Fra",), DATE: ("Sendt", "Dato"), TO: ("Til",), CC: ("Kopi", "Cc"), SUBJECT: ("Emne",)},
    "fi": {FROM: ("Lähettäjä",), DATE: ("Lähetetty", "Päivämäärä"), TO: ("Vastaanottaja",), CC: ("Kopio",),
           SUBJECT: ("Aihe",)},
    "pl": {FROM: ("Od", "Nadawca"), DATE: ("Wysłano", "Wysłane", "Data"), TO: ("Do", "Adresat"),
           CC: ("DW", "Kopia"), SUBJECT: ("Temat",)},
    "ru": {FROM: ("От", "От кого", "Отправитель"), DATE: ("Отправлено", "Дата", "Дата отправки"),
           TO: ("Кому",), CC: ("Копия",), SUBJECT: ("Тема",)},
    "uk": {FROM: ("Від", "Відправник"), DATE: ("Надіслано", "Дата"), TO: ("Кому",), CC: ("Копія",),
           SUBJECT: ("Тема",)},
    "cs": {FROM: ("Od",), DATE: ("Odesláno", "Datum"), TO: ("Komu",), CC: ("Kopie",), SUBJECT: ("Předmět",)},
    "sk": {FROM: ("Od",), DATE: ("Odoslané", "Dátum"), TO: ("Komu",), CC: ("Kópia",), SUBJECT: ("Predmet",)},
    "ja": {FROM: ("差出人", "送信者", "送信元"), DATE: ("送信日時", "日付", "送信日"), TO: ("宛先", "受信者"),
           CC: ("CC",), SUBJECT: ("件名",)},
    "ko": {FROM: ("보낸 사람", "보낸사람"), DATE: ("보낸 날짜", "날짜"), TO: ("받는 사람", "받는사람"),
           CC: ("참조",), SUBJECT: ("제목",)},
    "tr": {FROM: ("Kimden", "Gönderen"), DATE: ("Gönderildi", "Gönderilme", "Tarih"), TO: ("Kime", "Alıcı"),
           CC: ("Bilgi",), SUBJECT: ("Konu",)},
    "hu": {FROM: ("Feladó",), DATE: ("Elküldve", "Küldve", "Dátum"), TO: ("Címzett",), CC: ("Másolat",),
           SUBJECT: ("Tárgy",)},
    "ro": {FROM: ("De la",), DATE: ("Trimis", "Data"), TO: ("Către",), SUBJECT: ("Subiect",)},
    "el": {FROM: ("Από",), DATE: ("Στάλθηκε", "Ημερομηνία"), TO: ("Προς",), CC: ("Κοιν",), SUBJECT: ("Θέμα",)},
    "hr": {FROM: ("Šalje",), DATE: ("Poslano",), TO: ("Prima",), SUBJECT: ("Predmet",)},
    "sl": {FROM: ("Pošiljatelj",), DATE: ("Poslano",), TO: ("Prejemnik",), SUBJECT: ("Zadeva",)},
    "vi": {FROM: ("Từ",), DATE: ("Đã gửi", "Ngày"), TO: ("Đến",), SUBJECT: ("Chủ đề",)},
    "id": {FROM: ("Dari",), DATE: ("Dikirim", "Tanggal"), TO: ("Kepada",), SUBJECT: ("Perihal", "Subjek")},
}

ATTRIBUTION_VERBS: dict[str, tuple[str, ...]] = {
    "en": ("wrote", "writes"),
    "zh-Hans": ("写道",),
    "zh-Hant": ("寫道",),
    "de": ("schrieb", "geschrieben"),
    "fr": ("a écrit", "écrit"),
    "es": ("escribió",),
    "ca": ("ha escrit", "va escriure"),
    "it": ("ha scritto", "scrisse"),
    "pt": ("escreveu",),
    "nl": ("schreef", "het volgende geschreven"),
    "sv": ("skrev",),
    "da": ("skrev",),
    "no": ("skrev",),
    "fi": ("kirjoitti",),
    "pl": ("napisał", "napisała", "napisał(a)", "pisze"),
    "ru": ("написал", "написала", "написал(а)", "пишет"),
    "uk": ("написав", "написала", "пише"),
    "cs": ("napsal", "napsala", "napsal(a)"),
    "sk": ("napísal", "napísala", "napísal(a)"),
    "ja": ("のメッセージ", "は書きました"),
    "ko": ("작성", "님이 작성"),
    "tr": ("yazdı",),
    "hu": ("írta",),
    "ro": ("a scris",),
    "el": ("έγραψε",),
    "hr": ("je napisao", "je napisala"),
    "sl": ("je napisal", "je napisala"),
    "lt": ("rašė",),
    "lv": ("rakstīja",),
    "et": ("kirjutas",),
    "vi": ("đã viết",),
    "id": ("menulis",),
}

ATTRIBUTION_OPENERS: dict[str, tuple[str, ...]] = {
    "en": ("On", "At"),
    "zh-Hans": ("在",),
    "de": ("Am",),
    "fr": ("Le",),
    "es": ("El",),
    "it": ("Il", "In data"),
    "pt": ("Em", "No dia"),
    "nl": ("Op",),
    "sv": ("Den",),
    "da": ("Den",),
    "no": ("Den",),
    "pl": ("W dniu", "Dnia"),
    "cs": ("Dne",),
}

SEPARATORS: dict[str, tuple[str, ...]] = {
    "en": ("Original Message", "Original", "Forwarded message", "Forwarded Message", "Begin forwarded message",
           "Replied Message", "Reply Message", "Original Email", "Reply above this line"),
    "zh-Hans": ("原始邮件", "原邮件", "回复的原邮件", "转发的邮件", "转发邮件", "原始信息", "邮件原文"),
    "zh-Hant": ("原始郵件", "原始信件", "轉寄郵件", "轉寄的郵件"),
    "de": ("Ursprüngliche Nachricht", "Originalnachricht", "Original Nachricht", "Weitergeleitete Nachricht",
           "Anfang der weitergeleiteten Nachricht", "Ursprüngliche E-Mail"),
    "fr": ("Message d'origine", "Message original", "Mail original", "Message transféré",
           "Début du message réexpédié", "Début du message transféré", "Courriel original"),
    "es": ("Mensaje original", "Mensaje reenviado", "Inicio del mensaje reenviado"),
    "it": ("Messaggio originale", "Messaggio inoltrato", "Inizio messaggio inoltrato"),
    "pt": ("Mensagem original", "Mensagem encaminhada", "Início da mensagem encaminhada"),
    "nl": ("Oorspronkelijk bericht", "Origineel bericht", "Doorgestuurd bericht", "Begin doorgestuurd bericht"),
    "sv": ("Ursprungligt meddelande", "Originalmeddelande", "Vidarebefordrat meddelande"),
    "da": ("Oprindelig meddelelse", "Oprindelig besked", "Original meddelelse", "Videresendt meddelelse",
           "Videresendt besked"),
    "no": ("Opprinnelig melding", "Original melding", "Videresendt melding"),
    "fi": ("Alkuperäinen viesti", "Välitetty viesti"),
    "pl": ("Oryginalna wiadomość", "Wiadomość oryginalna", "Przekazana wiadomość", "Wiadomość przekazana"),
    "ru": ("Исходное сообщение", "Оригинальное сообщение", "Пересылаемое сообщение", "Пересланное сообщение"),
    "uk": ("Початкове повідомлення", "Оригінальне повідомлення", "Пересланий лист"),
    "cs": ("Původní zpráva", "Přeposlaná zpráva"),
    "sk": ("Pôvodná správa", "Preposlaná správa"),
    "ja": ("元のメッセージ", "転送されたメッセージ", "Original Message"),
    "ko": ("원본 메시지", "전달된 메시지", "원본 메일"),
    "tr": ("Orijinal Mesaj", "Özgün İleti", "İletilen ileti"),
    "hu": ("Eredeti üzenet", "Továbbított üzenet"),
    "ro": ("Mesaj original",),
    "el": ("Αρχικό μήνυμα",),
}

# Device and app names for "{device}" in DEVICE_SIGNATURES.
DEVICES: tuple[str, ...] = (
    "iPhone", "iPad", "iPod", "Apple Watch", "Android", "BlackBerry", "Samsung", "Samsung Galaxy", "Galaxy",
    "Huawei", "HUAWEI", "Honor", "Xiaomi", "Redmi", "OnePlus", "OPPO", "vivo", "Pixel", "Nokia", "Motorola",
    "Sony", "LG", "HTC", "ZTE", "Lenovo", "Asus", "Alcatel", "Wiko", "Realme", "Meizu", "Fairphone", "Sharp",
    "Kyocera", "Tecno", "Infinix", "Nothing Phone", "Windows Phone", "Windows Mobile", "mobile", "mobile phone",
    "phone", "smartphone", "tablet",
    "cell", "cellphone", "cell phone", "Android phone", "Android device", "Android-Mobiltelefon",
    "Mobiltelefon", "Handy", "Smartphone", "Mobilgerät", "téléphone", "portable", "móvil", "celular",
    "telefono", "cellulare", "telefoon", "mobil", "puhelin", "telefon", "телефон", "手机", "手機", "华为手机",
    "小米手机", "移动设备", "行動裝置",
)

DEVICE_SIGNATURES: dict[str, tuple[str, ...]] = {
    "en": ("Sent from my {device}", "Sent from {device}", "Sent via {device}", "Sent using {device}",
           "Sent from Mail for Windows", "Sent from Mail for Windows 10", "Sent from Outlook",
           "Sent from Outlook for iOS", "Sent from Outlook for Android", "Sent from Outlook for Mac",
           "Get Outlook for iOS", "Get Outlook for Android", "Get Outlook for Mac", "Sent from Yahoo Mail",
           "Sent from Yahoo Mail for iPhone", "Sent from Yahoo Mail on Android", "Sent from Gmail Mobile",
           "Sent from AOL Mobile Mail", "Sent from the Mail app", "Sent with Proton Mail secure email",
           "Sent from ProtonMail mobile", "Sent with Spark", "Sent from Spark", "Sent from BlueMail",
           "Sent from Samsung Mobile", "Sent from my Samsung Galaxy smartphone",
           "Sent from Mail.ru app for Android", "Sent from Zoho Mail", "Sent from Front"),
    "zh-Hans": ("发自我的{device}", "发自我的 {device}", "从我的{device}发送", "从我的 {device} 发送", "来自我的{device}",
                "发自网易邮箱大师", "发自网易邮箱手机版", "发自QQ邮箱", "发自QQ邮箱手机版", "发自我的QQ邮箱",
                "发自163邮箱", "发自126邮箱", "发自手机", "发自手机QQ邮箱", "来自QQ邮箱", "来自网易邮箱大师",
                "发自阿里邮箱", "从 Windows 版邮件发送", "从Windows 10 版邮件发送", "获取 Outlook for iOS",
                "获取 Outlook for Android", "获取Outlook for iOS", "获取Outlook for Android", "发自 Outlook"),
    "zh-Hant": ("從我的{device}傳送", "從我的 {device} 傳送", "寄自我的{device}", "發自我的{device}",
                "從 Windows 版郵件傳送", "取得 Outlook for iOS", "取得 Outlook for Android"),
    "de": ("Von meinem {device} gesendet", "Gesendet von meinem {device}", "Gesendet vom {device}",
           "Gesendet mit {device}", "Gesendet von {device}", "Gesendet von Outlook für Android",
           "Gesendet von Outlook für iOS", "Outlook für iOS beziehen", "Outlook für Android herunterladen",
           "Gesendet von Mail für Windows", "Von meinem Samsung Galaxy Smartphone gesendet",
           "Diese Nachricht wurde von meinem Android-Mobiltelefon mit K-9 Mail gesendet",
           "Diese Nachricht wurde von meinem Android Mobiltelefon mit GMX Mail gesendet",
           "Gesendet mit der GMX Mail App", "Gesendet mit der WEB.DE Mail App"),
    "fr": ("Envoyé de mon {device}", "Envoyé depuis mon {device}", "Envoyé à partir de mon {device}",
           "Envoyé de {device}", "Envoyé depuis {device}", "Envoyé à partir de Outlook pour Android",
           "Envoyé à partir de Courrier pour Windows", "Obtenir Outlook pour iOS", "Obtenir Outlook pour Android",
           "Envoyé depuis l'application Mail Orange", "Envoyé avec Proton Mail"),
    "es": ("Enviado desde mi {device}", "Enviado desde {device}", "Enviado con {device}",
           "Enviado desde Outlook para Android", "Enviado desde Correo para Windows",
           "Obtener Outlook para iOS", "Obtener Outlook para Android", "Enviado desde Yahoo Mail para Android"),
    "it": ("Inviato da {device}", "Inviato dal mio {device}", "Inviato da mio {device}",
           "Inviato da Outlook per Android", "Inviato da Posta per Windows", "Scarica Outlook per iOS",
           "Scarica Outlook per Android", "Inviato da Libero Mail per Android"),
    "pt": ("Enviado do meu {device}", "Enviado do {device}", "Enviado de meu {device}", "Enviado do meu celular",
           "Enviado do Outlook para Android", "Enviado do Email para Windows", "Obter o Outlook para iOS",
           "Obter o Outlook para Android"),
    "nl": ("Verzonden vanaf mijn {device}", "Verstuurd vanaf mijn {device}", "Verzonden met {device}",
           "Verzonden vanuit Outlook voor Android", "Verzonden vanuit Mail voor Windows",
           "Outlook voor iOS downloaden", "Outlook voor Android downloaden"),
    "sv": ("Skickat från min {device}", "Skickat från {device}", "Skickades från min {device}",
           "Skickat från Outlook för Android", "Skickat från E-post för Windows", "Hämta Outlook för iOS",
           "Hämta Outlook för Android"),
    "da": ("Sendt fra min {device}", "Sendt fra {device}", "Sendt fra Outlook til Android",
           "Sendt fra Mail til Windows", "Hent Outlook til iOS", "Hent Outlook til Android"),
    "no": ("Sendt fra min {device}", "Sendt fra {device}", "Sendt fra Outlook for Android",
           "Sendt fra E-post for Windows", "Få Outlook for iOS", "Få Outlook for Android"),
    "fi": ("Lähetetty {device}", "Lähetetty iPhonesta", "Lähetetty iPadista", "Lähetetty Android-laitteesta",
           "Lähetetty Outlook for Androidista", "Lähetetty Windowsin Sähköpostista", "Hanki Outlook for iOS"),
    "pl": ("Wysłane z mojego {device}", "Wysłano z mojego {device}", "Wysłane z {device}", "Wysłano z {device}",
           "Wysłane z iPhone'a", "Wysłano z iPhone'a", "Wysłane z aplikacji Outlook dla systemu Android",
           "Wysłane z aplikacji Poczta dla Windows", "Pobierz aplikację Outlook dla systemu iOS"),
    "ru": ("Отправлено с {device}", "Отправлено с моего {device}", "Отправлено из {device}",
           "Отправлено из мобильной Почты Mail.ru", "Отправлено из мобильной Яндекс.Почты",
           "Отправлено из приложения Почта для Windows", "Получить Outlook для iOS",
           "Получить Outlook для Android", "Отправлено из Outlook для Android", "Отправлено с iPhone"),
    "uk": ("Надіслано з {device}", "Надіслано з мого {device}", "Відправлено з {device}",
           "Надіслано з Outlook для Android", "Отримати Outlook для iOS"),
    "cs": ("Odesláno z {device}", "Odesláno z mého {device}", "Odesláno z iPhonu",
           "Odesláno z aplikace Outlook pro Android", "Odesláno z Pošty pro Windows"),
    "sk": ("Odoslané z {device}", "Odoslané z môjho {device}", "Odoslané z iPhonu"),
    "ja": ("{device}から送信", "{device} から送信", "Outlook for iOS を入手", "Outlook for Android を入手",
           "Windows 版メールから送信"),
    "ko": ("{device}에서 보냄", "{device}에서 보냈습니다", "iOS용 Outlook 받기", "Android용 Outlook 받기",
           "Windows용 메일에서 보냄"),
    "tr": ("{device}'umdan gönderildi", "{device} cihazımdan gönderildi", "{device}'dan gönderildi",
           "iPhone'umdan gönderildi", "iOS için Outlook'u edinin", "Android için Outlook'u edinin"),
    "hu": ("Elküldve az {device} készülékről", "Küldve az {device}-omról", "Elküldve az iPhone-omról",
           "Küldve iPhone-ról", "Az Android Outlookból küldve"),
    "ro": ("Trimis de pe {device}", "Trimis de pe {device}-ul meu", "Trimis din Outlook pentru Android"),
    "el": ("Στάλθηκε από το {device} μου", "Στάλθηκε από {device}"),
}

# -- HTML quote containers (read by parsers/html.py) ------------------------------------------
# Matched as substrings of a class token or of the id, case-insensitively (Yahoo prefixes its
# class with a random "ydp…": "ydp9b1f0a55yahoo_quoted").

# The content of these is the quoted mail: rendered as "> " lines.
HTML_QUOTE_CLASSES: tuple[str, ...] = (
    "gmail_quote",            # Gmail: div.gmail_quote / gmail_quote_container, blockquote.gmail_quote
    "yahoo_quoted",           # Yahoo Mail
    "iosymail",               # Yahoo Mail for iOS
    "protonmail_quote",       # Proton Mail
    "tutanota_quote",         # Tuta
    "zmail_extra",            # Zoho Mail
    "skiff_quote",
    "ntes-mailmaster-quote",  # NetEase Mail Master (网易邮箱大师)
    "nui-mail-quote",         # NetEase web mail
)
HTML_QUOTE_IDS: tuple[str, ...] = (
    "isreplycontent",         # NetEase 163/126 web mail, Foxmail
    "isforwardcontent",
    "foxmail_quote",          # Foxmail
    "origbody",               # Sina
    "reply139content",        # 139 mail
    "orimsghtmlseperator",
    "mail-editor-reference-message-container",  # Outlook for Mac / new Outlook
)
# A <blockquote> is a quote with type="cite" (Apple Mail, Thunderbird), a cite="" attribute, one of the
# classes or ids above, or the left rule clients draw beside a quote; a bare <blockquote> is indentation.
HTML_QUOTE_STYLES: tuple[str, ...] = ("border-left:",)

# The attribution line inside a quote container, rendered unprefixed above the quote.
HTML_ATTRIBUTION_CLASSES: tuple[str, ...] = ("gmail_attr", "moz-cite-prefix")

# Everything from these on is the quoted mail (Outlook writes the header block, then the old body
# as siblings, not inside one container).
HTML_QUOTE_REST_IDS: tuple[str, ...] = (
    "appendonsend",           # Outlook on the web / new Outlook: marks the end of the new text
    "divrplyfwdmsg",          # Outlook: the "From:/Sent:" block of a reply or forward
    "stopspelling",           # Outlook.com / Hotmail: <hr id="stopSpelling"> above the header block
    "replysplit",
)
HTML_QUOTE_REST_CLASSES: tuple[str, ...] = (
    "outlookmessageheader",   # Outlook 2003: the "-----Original Message-----" block
)
# Outlook desktop's header block: a div with a thin top rule in these colours (whitespace removed,
# lower case), e.g. style="border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0cm 0cm 0cm".
HTML_QUOTE_REST_STYLES: tuple[str, ...] = (
    "border-top:solid#e1e1e1",
    "border-top:solid#b5c4df",
    "border-top:solid#e5e5e5",
    "border-top-color:rgb(229,229,229)",  # Windows Mail
)
