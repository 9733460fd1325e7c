"""The words and identifiers of the modelled audience: company and person names, job titles,
what the tenants publish (menus, QR scenes, whitepapers, products) and what people write, plus
random platform-shaped IDs. Data and tiny pure helpers only; every choice takes the caller's rng.

Names and texts are bilingual and carry XML/URL-sensitive characters (``&``, ``<``, ``>``) on
purpose, so the simulator's rendering and ingest's parsing see them.
"""

from __future__ import annotations

import random

# Job titles by buying role (shared/vocabulary.py BUYING_ROLES), in Chinese and English.
TITLES: dict[str, dict[str, tuple[str, ...]]] = {
    "decision_maker": {
        "zh": ("总经理", "董事长", "副总经理", "首席执行官", "总裁"),
        "en": ("CEO", "General Manager", "Managing Director", "President"),
    },
    "technical": {
        "zh": ("架构师", "IT经理", "研发总监", "技术总监", "首席技术官", "信息化主管"),
        "en": ("CTO", "IT Manager", "R&D Director", "Solution Architect", "Head of IT"),
    },
    "finance": {
        "zh": ("财务总监", "财务经理", "会计主管"),
        "en": ("CFO", "Finance Manager", "Financial Controller"),
    },
    "compliance": {
        "zh": ("法务经理", "合规专员", "风控经理", "法务总监"),
        "en": ("Legal Counsel", "Compliance Officer", "Compliance Manager"),
    },
    "procurement": {
        "zh": ("采购经理", "采购专员", "供应链总监", "采购总监"),
        "en": ("Procurement Manager", "Purchasing Manager", "Sourcing Specialist"),
    },
    "business": {
        "zh": ("生产经理", "运营总监", "销售经理", "车间主任", "质量经理", "工厂厂长"),
        "en": ("Operations Director", "Plant Manager", "Sales Manager", "Production Manager"),
    },
}

# Companies and people.
CITIES = (
    ("苏州", "Suzhou"),
    ("深圳", "Shenzhen"),
    ("上海", "Shanghai"),
    ("宁波", "Ningbo"),
    ("东莞", "Dongguan"),
    ("无锡", "Wuxi"),
    ("青岛", "Qingdao"),
    ("成都", "Chengdu"),
    ("天津", "Tianjin"),
    ("佛山", "Foshan"),
)
BRANDS = (
    ("精工", "Jinggong"),
    ("华信", "Huaxin"),
    ("恒达", "Hengda"),
    ("博远", "Boyuan"),
    ("宏昌", "Hongchang"),
    ("瑞丰", "Ruifeng"),
    ("中科", "Zhongke"),
    ("鼎盛", "Dingsheng"),
    ("新锐", "Xinrui"),
    ("永泰", "Yongtai"),
    ("天合", "Tianhe"),
    ("启明", "Qiming"),
)
INDUSTRIES = (
    ("机械", "Machinery", "machinery"),
    ("电子", "Electronics", "electronics"),
    ("汽车零部件", "Auto Parts", "automotive"),
    ("精密制造", "Precision Manufacturing", "manufacturing"),
    ("新材料", "New Materials", "materials"),
    ("医疗器械", "Medical Devices", "medical_devices"),
    ("物流", "Logistics", "logistics"),
    ("化工", "Chemical", "chemicals"),
)
SIZES = ("1-49", "50-199", "200-999", "1000-4999", "5000+")
SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗"
GIVEN_NAMES = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华建国志文"
EN_NAMES = ("Kevin", "Grace", "Michael", "Linda", "David", "Emily", "Jason", "Vivian", "Eric")

# What the B2B tenant (an industrial software vendor) publishes and runs.
B2B_MENUS = ("MENU_SOLUTIONS", "MENU_CASES", "MENU_WHITEPAPERS", "MENU_WEBINARS", "MENU_CONTACT")
B2B_SCENES = ("expo2026_booth", "whitepaper_industry40", "sales_card", "webinar_invite")
B2B_CONTENT = (
    ("工业4.0数字化转型白皮书", "whitepaper"),
    ("2026中国制造业MES应用报告", "industry_report"),
    ("Predictive Maintenance Whitepaper", "whitepaper"),
    ("等保2.0与工业软件安全合规指南", "whitepaper"),
)
B2B_CASES = (
    ("某汽车零部件龙头MES落地案例", "case_study"),
    ("ROI & TCO Case: Plant Go-Live", "case_study"),
)
B2B_SPECS = (
    ("ACME MES 技术规格说明书 v5.2", "spec"),
    ("Deployment & Security Architecture", "spec"),
)
WEBINARS = ("智能工厂排产优化实战", "OEE提升的五个抓手", "Secure OT/IT Integration Live Demo")
OFFLINE_EVENTS = (
    ("华东制造业数字化沙龙", "上海"),
    ("客户年会 2026", "苏州"),
    ("Smart Factory Meetup", "深圳"),
)

# What the B2C tenant (a tea brand) sells, and what its customers ask and complain about.
B2C_MENUS = ("MENU_NEW_ARRIVALS", "MENU_MEMBER", "MENU_STORES", "MENU_TEA_GUIDE", "MENU_COUPON")
B2C_SCENES = ("store_sh01", "store_sh02", "store_bj01", "store_gz03", "mall_popup", "package_card")
B2C_PRODUCTS = (
    ("茉莉雪芽 礼盒", 168.0),
    ("桂花乌龙 冷泡茶 x6", 59.9),
    ("白桃乌龙 袋泡茶", 39.9),
    ("大红袍 经典罐装 250g", 298.0),
    ("手作茶点 组合", 45.0),
    ("季节限定 樱花绿茶", 29.9),
)
B2C_QUESTIONS = (
    "这款茶适合孕妇喝吗？",
    "冷泡要泡多久？",
    "门店几点关门",
    "有没有无糖的？",
    "会员积分怎么用",
    "Do you ship to Hong Kong?",
)
B2C_COMPLAINTS = (
    "收到的礼盒破损了，要求退款",
    "门店排队太久，服务态度差",
    "口味和描述不一样 & 包装漏气",
    "优惠券用不了，客服不回复",
)
LOCATIONS = ((31.2304, 121.4737), (39.9042, 116.4074), (23.1291, 113.2644), (30.5728, 104.0668))

# Platform-shaped identifiers (openids, external userids, tickets).
ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
OPENID_CHARS = ID_CHARS + "_-"


def random_id(rng: random.Random, n: int, alphabet: str = ID_CHARS) -> str:
    """``n`` characters of ``alphabet``, drawn from ``rng``."""
    return "".join(rng.choice(alphabet) for _ in range(n))


def article_url(rng: random.Random) -> str:
    """An OA article link; its query has '&' on purpose (escaped in XML, kept in the URL)."""
    biz = "MzA" + random_id(rng, 9) + "=="
    return f"https://mp.weixin.qq.com/s?__biz={biz}&mid=2650{rng.randint(100000, 999999)}&idx=1"
