import AvatarMaker from "@/components/AvatarMaker";

export default function Home() {
  return (
    <>
      <a className="skip-link" href="#maker">
        Skip to the avatar maker
      </a>
      <main className="page">
        <header className="masthead">
          {/* Brand art from the node pack (copied by `npm run brand`): the background, and its overlay with the
              ETHMumbai name and mark on top, as the avatars have them. */}
          <img className="masthead__banner" src="/brand/ethmumbai_sunset.png" alt="" />
          <img className="masthead__banner masthead__banner--overlay" src="/brand/ethmumbai_sunset_overlay.png"
               alt="ETHMumbai" />
        </header>
        <div className="intro">
          <h1>Make your ETHMumbai avatar</h1>
          <p>Upload a selfie and we'll draw you in the ETHMumbai style, on the Mumbai skyline.</p>
        </div>
        <div id="maker">
          <AvatarMaker />
        </div>
      </main>
      <footer className="footer">
        <p>ETHMumbai · your photo is used only to make your avatar.</p>
      </footer>
    </>
  );
}
