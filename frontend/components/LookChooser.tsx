"use client";

import { backgroundLabel, CHOICES } from "@/lib/choices";

/** What the visitor picked; a field left out is the style's (or the workflow's) own choice. */
export interface Picks {
  style?: string;
  background?: string;
}

const PICKS_KEY = "ethmumbai-avatar-picks"; // sessionStorage: choices last for the visit

/** The saved picks that are still on offer (the params file may have changed since). */
export function loadPicks(): Picks {
  try {
    const saved = JSON.parse(sessionStorage.getItem(PICKS_KEY) ?? "{}") as Picks;
    const picks: Picks = {};
    if (CHOICES.styles?.presets.some((preset) => preset.name === saved.style)) picks.style = saved.style;
    if (saved.background && CHOICES.backgrounds.names.includes(saved.background)) picks.background = saved.background;
    return picks;
  } catch {
    return {};
  }
}

export function savePicks(picks: Picks): void {
  try {
    sessionStorage.setItem(PICKS_KEY, JSON.stringify(picks));
  } catch {
    // storage refused (private modes): the picks still hold until the page is left
  }
}

/** A swatch of each background: the pack's art where it is an image, the brand colours otherwise. */
function Swatch({ name }: { name: string }) {
  const image = name.endsWith(".png") ? { backgroundImage: `url("/brand/${name}")` } : undefined;
  return <span className={`swatch swatch--${image ? "image" : name}`} style={image} aria-hidden="true" />;
}

export default function LookChooser({
  picks,
  onChange,
  disabled,
}: {
  picks: Picks;
  onChange: (picks: Picks) => void;
  disabled: boolean;
}) {
  const styles = CHOICES.styles;
  const style = picks.style ?? styles?.default;
  // With style presets, each brings its own background unless the visitor picks one ("" = the style's own).
  const background = picks.background ?? (styles ? "" : CHOICES.backgrounds.default);
  return (
    <section aria-labelledby="look-heading" className="panel look">
      <h2 id="look-heading">Your look</h2>
      {styles && (
        <fieldset className="look__group" disabled={disabled}>
          <legend>Style</legend>
          <div className="look__options">
            {styles.presets.map((preset) => (
              <label key={preset.name} className="look__option look__option--style">
                <input
                  type="radio"
                  name="style"
                  value={preset.name}
                  checked={style === preset.name}
                  onChange={() => onChange({ ...picks, style: preset.name })}
                />
                <span className="look__label">{preset.label}</span>
                {preset.description && <span className="look__description">{preset.description}</span>}
              </label>
            ))}
          </div>
        </fieldset>
      )}
      <fieldset className="look__group" disabled={disabled}>
        <legend>Background</legend>
        <div className="look__options">
          {styles && (
            <label className="look__option">
              <input
                type="radio"
                name="background"
                value=""
                checked={background === ""}
                onChange={() => onChange({ style: picks.style })}
              />
              <span className="look__label">The style's own</span>
            </label>
          )}
          {CHOICES.backgrounds.names.map((name) => (
            <label key={name} className="look__option">
              <input
                type="radio"
                name="background"
                value={name}
                checked={background === name}
                onChange={() => onChange({ ...picks, background: name })}
              />
              <Swatch name={name} />
              <span className="look__label">{backgroundLabel(name)}</span>
            </label>
          ))}
        </div>
      </fieldset>
      <p className="fineprint">Your choices apply to the next avatar and stay while this tab is open.</p>
    </section>
  );
}
