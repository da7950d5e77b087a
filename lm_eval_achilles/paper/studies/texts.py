"""Texts used by the studies, all written for this project (no dataset download needed).

``WIKITEXT``: paragraphs in WikiText-103 formatting (spaces around punctuation, `` @-@ `` for hyphens,
`` @,@ `` in numbers), standing in for the paper's 1,000 WikiText-103 samples offline.
``PROBES``: 16 short probe texts of 4 types x 5 languages (the design of the paper's Table 19).
``LENGTH_SERIES``: the paper's own token-expansion texts of appendix A.7.1 (quoted there), for Figure 7.
"""

from __future__ import annotations

WIKITEXT: list[str] = [
    "The Harrowgate Viaduct is a disused railway bridge that crosses the valley of the River Lune in "
    "north @-@ west England . Construction began in 1861 under the engineer Thomas Blackwood , and the "
    "structure was opened to traffic two years later . Built of local sandstone , the viaduct has "
    "eleven semicircular arches , the tallest of which rises 34 metres above the riverbed . It carried "
    "the branch line between Kendal and Sedbergh until the line closed in 1966 , after which the bridge "
    "fell into disrepair . A local trust bought the structure in 1998 and restored it as part of a "
    "walking and cycling route .",
    "Margaret Ellery ( 1894 – 1971 ) was an American astronomer known for her work on variable stars . "
    "After studying mathematics at Vassar College , she joined the staff of the Harvard College "
    "Observatory in 1917 , where she classified more than 9 @,@ 000 stellar spectra . Her 1932 catalogue "
    "of long @-@ period variables remained a standard reference for several decades . Ellery was "
    "elected to the American Astronomical Society in 1925 and later taught at Smith College , where she "
    "encouraged a generation of women to pursue careers in science .",
    "The 1987 season was the club 's most successful since its foundation . Under the new manager , "
    "the team lost only four of its thirty league matches and finished eight points clear at the top "
    "of the table . The striker Daniel Okafor scored 23 goals , a club record that stood until 2004 . "
    "In the cup the side reached the semi @-@ final , where it was beaten 2 – 1 after extra time . "
    "Attendance at home matches rose by almost a third , and the club used the extra income to build "
    "a covered stand along the north side of the ground .",
    "The red @-@ crowned warbler is a small passerine bird found in the montane forests of central "
    "Africa . It measures about 12 centimetres in length and weighs between 9 and 11 grams . The adult "
    "male has olive upperparts , a yellow breast and a bright red patch on the crown , while the female "
    "is duller . The species feeds mainly on insects and spiders , which it gleans from leaves in the "
    "middle layers of the canopy . Its call is a high , thin whistle repeated at short intervals .",
]

#: (type, language, text): 4 types x 5 languages, 16 texts; every text has well over 10 tokens.
PROBES: list[tuple[str, str, str]] = [
    (
        "Wikipedia",
        "English",
        "The snow leopard is a large cat native to the mountain ranges of Central and South Asia. "
        "Its thick fur and long tail help it survive in cold, rocky habitats.",
    ),
    (
        "Wikipedia",
        "English",
        "The Danube is the second-longest river in Europe. It flows through ten countries "
        "before emptying into the Black Sea through a wide delta.",
    ),
    (
        "News",
        "English",
        "City officials announced on Monday that the central bridge will close for repairs next "
        "month. Commuters are advised to use the ferry or the northern ring road.",
    ),
    (
        "News",
        "English",
        "Global markets rose sharply after the central bank kept interest rates unchanged, "
        "lifting shares of banks and technology companies across Asia and Europe.",
    ),
    (
        "Biography",
        "English",
        "Marie Curie, born 1867 in Warsaw, was a physicist and chemist who discovered polonium "
        "and radium. She was the first person to win Nobel Prizes in two sciences.",
    ),
    (
        "Biography",
        "English",
        "Nelson Mandela, born 1918, spent 27 years in prison before becoming South Africa's first "
        "democratically elected president in 1994.",
    ),
    (
        "Media",
        "English",
        '"Spirited Away", directed by Hayao Miyazaki, follows a girl trapped in a world of spirits. '
        "The animated film won an Academy Award and broke box-office records in Japan.",
    ),
    (
        "Media",
        "English",
        '"Breaking Bad" is a television drama about a chemistry teacher who turns to crime. '
        "Critics praised its writing, acting and slow-building tension.",
    ),
    (
        "Wikipedia",
        "French",
        "Le Danube est le deuxième plus long fleuve d'Europe. Il traverse dix pays avant de se "
        "jeter dans la mer Noire par un vaste delta.",
    ),
    (
        "News",
        "French",
        "Les marchés mondiaux ont fortement progressé après que la banque centrale a maintenu ses "
        "taux d'intérêt, soutenant les valeurs bancaires et technologiques.",
    ),
    (
        "Media",
        "German",
        '"Breaking Bad" ist eine Fernsehserie über einen Chemielehrer, der in die Kriminalität '
        "abrutscht. Kritiker lobten das Drehbuch, die Schauspieler und die Spannung.",
    ),
    (
        "Biography",
        "German",
        "Marie Curie, geboren 1867 in Warschau, war eine Physikerin und Chemikerin, die Polonium "
        "und Radium entdeckte und zwei Nobelpreise erhielt.",
    ),
    (
        "Wikipedia",
        "Chinese",
        "雪豹是一种原产于中亚和南亚山区的大型猫科动物。它厚厚的皮毛和长长的尾巴帮助它在寒冷多岩石的环境中生存。",
    ),
    ("News", "Chinese", "市政官员周一宣布，中央大桥将于下个月关闭维修。建议通勤者乘坐渡轮或使用北环路。"),
    (
        "Media",
        "Spanish",
        '"El viaje de Chihiro", dirigida por Hayao Miyazaki, sigue a una niña atrapada en un mundo '
        "de espíritus. La película ganó un Premio de la Academia.",
    ),
    (
        "Biography",
        "Spanish",
        "Nelson Mandela, nacido en 1918, pasó 27 años en prisión antes de convertirse en el primer "
        "presidente elegido democráticamente de Sudáfrica en 1994.",
    ),
]

#: The paper's input-length series (appendix A.7.1, quoted from the paper); the token counts given there
#: are for the Llama-3 tokenizer, the studies report the count of the model under test.
LENGTH_SERIES: list[str] = [
    "Elara",
    "Eternal Memory",
    "Archivist, Memory, Eternity",
    "Eternal Cycle of Memory",
    "Archivist Preserves Eternal Cosmic Memory",
    "The Archivist Preserves Eternal Cosmic Memory",
    "The Archivist Endures, Preserving Eternal Cosmic Memory",
    "The Archivist Endures, Guarding Eternal Memory Across Time",
    "The Archivist Endures, Preserving Eternal Memories Across Infinite Time",
    "Archivist discovers destiny, crystal reveals cycles, memory endures.",
    "Elara discovers ancient crystal, sees future self, accepts destiny as Archivist, merges with memory, "
    "ensuring civilizations endure beyond time.",
    "Elara finds ancient wreck, crystal reveals her future self as Archivist. She embraces destiny, merges with "
    "artifact, preserving civilizations' memories across infinite cycles while Jalen mourns her loss, hearing "
    "whispers that memory and Archivist endure beyond time.",
    "Elara uncovers a desert wreck, where a glowing crystal shows her future as Archivist. Despite Jalen's pleas, "
    "she embraces fate, merges with the artifact, and becomes eternal memory, ensuring civilizations' stories "
    "endure forever, whispered across time: memory endures, Archivist endures, cycles repeat endlessly.",
]
